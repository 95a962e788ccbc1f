//! `raftctl delete-pod` and `raftctl chaos` for real, on the local platform
//! (a `raftctl local` cluster) and on Docker (containers made by `raftctl
//! deploy --platform docker` from the image tests/containers.rs builds):
//! the leader deleted (forced and graceful) while the checked workload
//! runs; the run must lose no acknowledged write, stay linearizable and
//! apply every INCR exactly once.

mod common;

use common::ctl::{Ctl, raftctl};
use common::docker::ClusterObjects;
use common::image;
use common::local::{Local, free_base_port};

/// The checks every chaos run must pass: nothing lost, linearizable,
/// exactly-once INCR, each fault on the leader, forced and graceful both,
/// real work done, and the cluster back within `max_gap` seconds.
fn assert_chaos_passed(report: &serde_json::Value, min_faults: usize, max_gap: f64) {
    assert_verdict_passed(report);
    assert!(
        report["replica_states"]["members"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
    let faults = report["faults"].as_array().unwrap();
    assert!(faults.len() >= min_faults, "{report:#}");
    assert!(faults.iter().any(|f| f["grace"] == "forced"));
    assert!(faults.iter().any(|f| f["grace"] == "graceful"));
    // Each fault hit the leader of the moment, and the cluster came back.
    assert!(faults.iter().all(|f| f["was_leader"] == true), "{report:#}");
    let ok = report["operations"]["ok"].as_u64().unwrap();
    assert!(ok > 1000, "the run did little work: {report:#}");
    assert!(report["incr"]["acknowledged"].as_u64().unwrap() > 50);
    let gap = report["unavailability_seconds"]["max"].as_f64().unwrap();
    assert!(gap < max_gap, "a fault left the cluster unavailable {gap}s");
}

/// The verdict of any passing run: PASS, nothing lost, linearizable,
/// exactly-once INCR, and the members' state hashes (compared at one index
/// at the end) equal.
fn assert_verdict_passed(report: &serde_json::Value) {
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["lost_writes"], 0);
    assert_eq!(report["linearizability"]["verdict"], "linearizable");
    assert_eq!(report["incr"]["ok"], true);
    assert_eq!(report["replica_states"]["verdict"], "equal", "{report:#}");
}

/// One chaos run at a time: each measures unavailability, and two
/// clusters on two shared cores would measure each other.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn without_a_local_cluster_delete_pod_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = raftctl(&[
        "delete-pod",
        "--platform",
        "local",
        "--data-dir",
        d,
        "node-0",
    ]);
    out.fails(2, "no raftctl local runs on");
}

#[test]
fn chaos_on_a_local_cluster_loses_nothing() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let local = Local::start(dir.path(), free_base_port());
    let platform = ["--platform", "local", "--data-dir", d];

    // delete-pod: the leader's process is killed and started again.
    let args = [
        &["delete-pod", "--leader", "--grace", "0", "-o", "json"][..],
        &platform,
    ]
    .concat();
    let deleted = raftctl(&args).ok().json();
    assert_eq!(deleted["platform"], "local");
    assert_eq!(deleted["grace"], "forced");
    let pod = deleted["pod"].as_str().unwrap().to_string();
    assert!(pod.starts_with("node-"), "{deleted}");
    // A named pod that does not exist is bad input (exit 3).
    let args = [&["delete-pod", "node-7"][..], &platform].concat();
    assert_eq!(raftctl(&args).code, Some(3));

    // chaos: a fault every 4 s for 24 s, forced and graceful in turn.
    let args = chaos_args("24s", "4s", &platform);
    let report = raftctl(&args).ok().json();
    assert_chaos_passed(&report, 4, 4.0);
    local.stop();
}

/// Every fault kind (`--faults all`) on a cluster with mutual TLS on every
/// port: the workload, the fault injection, the nodes a member change
/// adds and the final checks all go through TLS with the certificates
/// `raftctl local --tls` made. Kinds this machine cannot inject are left
/// out by chaos, named in its report; every other kind must have run.
#[test]
fn every_fault_kind_on_a_tls_local_cluster_loses_nothing() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Room for the node the member changes add (node 3).
    let local = Local::start_tls(dir.path(), common::ports::free_base_port(4));
    // Without the certificates the cluster answers nothing.
    local
        .ctl()
        .run(&["get", "k"])
        .fails(2, "hint: if the cluster uses TLS, give --cacert");
    let mut ctl = local.ctl();
    for (k, v) in local.tls_env() {
        ctl = ctl.env(&k, &v);
    }
    let report = ctl.run(&faults_args("240s", "1s", "all", d)).ok().json();
    assert_verdict_passed(&report);
    let left_out: Vec<&str> = report["left_out"]
        .as_array()
        .map(|l| l.iter().map(|x| x.as_str().unwrap()).collect())
        .unwrap_or_default();
    for line in &left_out {
        eprintln!("SKIPPED {line}");
    }
    let ran: Vec<&str> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fault"].as_str().unwrap())
        .collect();
    let all: raftkv::ctl::fault::Faults = "all".parse().unwrap();
    for kind in &all.kinds {
        let label = kind.label();
        let skipped = left_out.iter().any(|l| l.starts_with(&label));
        assert!(
            skipped || ran.iter().any(|r| r.starts_with(&label)),
            "{label} never ran: {ran:?}"
        );
    }
    for check in report["links"].as_array().unwrap() {
        assert_eq!(check["confirmed"], true, "{check:#}");
        assert_eq!(check["recovered"], true, "{check:#}");
    }
    local.stop();
}

/// The leader's process frozen (SIGSTOP) for 900 ms, three election
/// timeouts, while it holds its lease: the others elect a new leader, and
/// the old one, when it runs again, must serve no stale read and lose no
/// write. A pause is refused where it cannot be done, before the run.
#[test]
fn chaos_pausing_the_leader_on_a_local_cluster_stays_linearizable() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let local = Local::start(dir.path(), free_base_port());
    let platform = ["--platform", "local", "--data-dir", d];
    let first_term = local.ctl().run(&["status", "-o", "json"]).json()[0]["term"]
        .as_u64()
        .unwrap();
    let chaos = [
        "chaos",
        "--duration",
        "20s",
        "--interval",
        "4s",
        "--fault",
        "pause=900ms",
        "-o",
        "json",
    ];
    let report = raftctl(&[&chaos[..], &platform].concat()).ok().json();
    assert_verdict_passed(&report);
    let faults = report["faults"].as_array().unwrap();
    assert!(faults.len() >= 3, "{report:#}");
    for f in faults {
        assert_eq!(f["fault"], "pause 900ms", "{report:#}");
        assert_eq!(f["grace"], "-");
        assert_eq!(f["was_leader"], true, "{report:#}");
        // Counted from the pause's start (once it was counted from its
        // end, and read 0.05 s): the frozen leader serves nothing until
        // the others elect, at least an election timeout (300 ms) later.
        let gap = f["unavailable_seconds"].as_f64().unwrap();
        assert!(
            gap >= 0.25,
            "a pause of the leader measured {gap}s: {report:#}"
        );
    }
    // Each pause outlasted the election timeout: the frozen leader was
    // replaced, so the term moved past the first leader's.
    let terms: Vec<u64> = local
        .ctl()
        .run(&["status", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["term"].as_u64())
        .collect();
    assert!(
        terms.iter().all(|&t| t > first_term),
        "terms {terms:?}, first {first_term}"
    );
    local.stop();
}

/// Every partition kind and a slow link, each once, on a local cluster
/// with the checked workload: each fault must be seen to take effect
/// (the majority side elects, the cut-off leader's lease lapses, the far
/// side stops following, a write through slow links takes the delay),
/// the cluster must converge within its bound after each heal, and the
/// history must pass every check.
#[test]
fn partitions_and_a_slow_link_on_a_local_cluster_lose_nothing() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let local = Local::start(dir.path(), free_base_port());
    let faults = "partition=isolate-leader:2s,partition=leader-minority:2s,\
                  partition=one-way-out:2s,partition=one-way-in:2s,partition=bridge:2s,\
                  slow=60ms~10ms:2s";
    let report = raftctl(&faults_args("42s", "5s", faults, d)).ok().json();
    assert_verdict_passed(&report);
    let checks = report["links"].as_array().unwrap();
    for kind in [
        "partition isolate-leader",
        "partition leader-minority",
        "partition one-way-out",
        "partition one-way-in",
        "partition bridge",
        "slow 60ms",
    ] {
        let check = checks
            .iter()
            .find(|c| c["fault"].as_str().unwrap().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} in {report:#}"));
        assert_eq!(check["confirmed"], true, "{check:#}");
        assert_eq!(check["recovered"], true, "{check:#}");
        let bound = 2.0 * 0.3 + 5.0;
        assert!(check["recovered_after_seconds"].as_f64().unwrap() < bound);
    }
    // Partitions hit the leader of the moment.
    for f in report["faults"].as_array().unwrap() {
        if f["fault"].as_str().unwrap().starts_with("partition") {
            assert_eq!(f["was_leader"], true, "{report:#}");
        }
    }
    assert!(
        report["operations"]["ok"].as_u64().unwrap() > 1000,
        "{report:#}"
    );
    local.stop();
}

/// The proxies really lose what a partition cuts: a leader cut off from
/// both followers cannot commit a write sent to it (it fails; nobody
/// redirects it), the other two elect a leader and commit without it,
/// and once healed the cut-off write is nowhere.
#[test]
fn a_leader_cut_off_by_the_link_proxies_commits_nothing() {
    use raftkv::ctl::fault::Partition;
    use raftkv::ctl::local::control::{self, Answer, Request};
    use raftkv::ctl::local::links::LinkRule;
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let local = Local::start(dir.path(), base);
    let leader = local.leader();
    let endpoint = |id: u64| format!("127.0.0.1:{}", u64::from(base) + 10 * id);
    let others: Vec<u64> = (0..3).filter(|&i| i != leader).collect();
    let majority = others
        .iter()
        .map(|&i| endpoint(i))
        .collect::<Vec<_>>()
        .join(",");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ask = |request: Request| {
        runtime
            .block_on(control::ask(
                dir.path(),
                &request,
                std::time::Duration::from_secs(5),
            ))
            .unwrap()
    };
    let rules = Partition::IsolateLeader
        .cut(leader, &[0, 1, 2])
        .into_iter()
        .map(|(from, to)| LinkRule::cut(from, to))
        .collect();
    let answer = ask(Request::Links {
        rules,
        heal_after_ms: 60_000,
    });
    assert!(
        matches!(answer, Answer::Links { ref proxied } if proxied.len() == 6),
        "{answer:?}"
    );

    let alone = Ctl::new().endpoints(&endpoint(leader));
    let cut_off = alone.run(&["set", "cut-off", "lost", "--timeout", "3s"]);
    assert!(
        !cut_off.success(),
        "the cut-off leader committed: {cut_off}"
    );
    let rest = Ctl::new().endpoints(&majority);
    rest.run(&["set", "majority", "ok", "--timeout", "10s"])
        .ok();
    let status = alone.run(&["status", "-o", "json"]).json();
    let leads =
        status[0]["role"] == "leader" && status[0]["lease_remaining_seconds"].as_f64() > Some(0.0);
    assert!(
        !leads,
        "the cut-off leader still leads with a lease: {status:#}"
    );

    ask(Request::Heal);
    let all = local.ctl();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let got = all.run(&["get", "majority", "--timeout", "2s"]);
        if got.success() && got.stdout.contains("ok") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no recovery: {got}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    all.run(&["check", "--timeout", "10s"]).ok();
    let lost = all.run(&["get", "cut-off"]);
    assert!(
        !lost.stdout.contains("lost"),
        "the cut-off write surfaced: {lost}"
    );
    drop(runtime);
    local.stop();
}

/// Every fault kind `raftctl chaos` knows, each once and briefly, in one
/// run on a local cluster: a kill, a pause, the five partitions, a slow
/// link, a clock skew within the drift bound (where libfaketime is
/// installed), the five member changes, and the leader's fsyncs failing
/// and a follower's volume filling up (where libfiu's tools are
/// installed, and a tmpfs can be mounted). The verdict must be PASS, and
/// each fault that reports what it did must have been seen to take effect
/// and the cluster to recover.
#[test]
fn every_fault_kind_once_on_a_local_cluster_passes() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Room for the node the member changes add (node 3).
    let local = Local::start(dir.path(), common::ports::free_base_port(4));
    let mut kinds = vec![
        "kill",
        "pause=900ms",
        "partition=isolate-leader:2s",
        "partition=leader-minority:2s",
        "partition=one-way-out:2s",
        "partition=one-way-in:2s",
        "partition=bridge:2s",
        "slow=60ms~10ms:2s",
        "member=add-learner",
        "member=remove-leader",
        "member=remove-follower",
        "member=transfer-lagging",
        "member=rolling-restart",
    ];
    match raftkv::ctl::local::clock::library() {
        Ok(_) => kinds.push("skew=0.991@leader:4s"),
        Err(e) => eprintln!("SKIPPED the skew fault: {e}"),
    }
    use raftkv::ctl::fault::DiskFault;
    if disk_fault_possible(DiskFault::Fsync) {
        kinds.push("disk=fsync@leader:2s");
    }
    if disk_fault_possible(DiskFault::Full) {
        kinds.push("disk=full@follower:2s");
    }
    let faults = kinds.join(",");
    let report = raftctl(&faults_args("240s", "1s", &faults, d)).ok().json();
    assert_verdict_passed(&report);
    let faults = report["faults"].as_array().unwrap();
    let labels: Vec<&str> = faults
        .iter()
        .map(|f| f["fault"].as_str().unwrap())
        .collect();
    for kind in [
        "kill",
        "pause 900ms",
        "partition isolate-leader",
        "partition leader-minority",
        "partition one-way-out",
        "partition one-way-in",
        "partition bridge",
        "slow 60ms",
        "member add-learner",
        "member remove-leader",
        "member remove-follower",
        "member transfer-lagging",
        "member rolling-restart",
    ]
    .into_iter()
    .chain(
        kinds
            .iter()
            .any(|k| k.starts_with("skew"))
            .then_some("skew x0.991@leader"),
    )
    .chain(
        kinds
            .iter()
            .any(|k| k.starts_with("disk=fsync"))
            .then_some("disk fsync@leader"),
    )
    .chain(
        kinds
            .iter()
            .any(|k| k.starts_with("disk=full"))
            .then_some("disk full@follower"),
    ) {
        assert!(
            labels.iter().any(|l| l.starts_with(kind)),
            "{kind} never ran: {labels:?}"
        );
    }
    // Everything but kill and pause reports what it was seen to do.
    for check in report["links"].as_array().unwrap() {
        assert_eq!(check["confirmed"], true, "{check:#}");
        assert_eq!(check["recovered"], true, "{check:#}");
    }
    // The cluster is back to its three founders.
    let members = local.ctl().run(&["members", "-o", "json"]).ok().json();
    let text = members.to_string();
    assert!(
        !text.contains("\"id\":3,") && !text.contains("\"id\":3}"),
        "{members:#}"
    );
    local.stop();
}

/// Whether this machine can inject `fault` on a local cluster; prints
/// SKIPPED with what is missing where it cannot.
fn disk_fault_possible(fault: raftkv::ctl::fault::DiskFault) -> bool {
    use raftkv::ctl::fault::DiskFault;
    use raftkv::ctl::local::disk;
    let able = match fault {
        DiskFault::Fsync => disk::fiu_tools(),
        DiskFault::Full => disk::can_mount(),
    };
    able.inspect_err(|e| eprintln!("SKIPPED disk={}: {e}", fault.name()))
        .is_ok()
}

/// A short chaos run of disk fault `faults` alone on a local cluster: the
/// verdict must be PASS and each fault seen to stop its node with the
/// line that names the cause (`says`) while the others commit, and the
/// cluster to recover once the node is back on a sound disk.
fn assert_disk_fault_passes(faults: &str, says: &str, on_leader: bool) {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let local = Local::start(dir.path(), free_base_port());
    let report = raftctl(&faults_args("16s", "2s", faults, d)).ok().json();
    assert_verdict_passed(&report);
    let checks = report["links"].as_array().unwrap();
    assert!(checks.len() >= 2, "{report:#}");
    for check in checks {
        assert_eq!(check["confirmed"], true, "{check:#}");
        let seen = check["confirmation"].as_str().unwrap();
        assert!(seen.contains(says), "{check:#}");
        assert!(seen.contains("exit status: 1"), "{check:#}");
        assert!(seen.contains("a write committed without it"), "{check:#}");
        assert_eq!(check["recovered"], true, "{check:#}");
    }
    for f in report["faults"].as_array().unwrap() {
        assert_eq!(f["was_leader"], on_leader, "{report:#}");
    }
    assert!(
        report["operations"]["ok"].as_u64().unwrap() > 1000,
        "{report:#}"
    );
    // Every node is back in its own data directory: no volume, no fifo.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".volume") || n.contains(".fiu"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    local.stop();
}

/// Every fsync of the leader fails (libfiu) while it serves: it must stop
/// rather than retry, and nothing it acknowledged may be lost.
#[test]
fn chaos_failing_the_leaders_fsyncs_on_a_local_cluster_loses_nothing() {
    if disk_fault_possible(raftkv::ctl::fault::DiskFault::Fsync) {
        assert_disk_fault_passes(
            "disk=fsync@leader:2s",
            "the node stops rather than retry",
            true,
        );
    }
}

/// A follower's volume (a small tmpfs; root) fills up: it stops saying
/// so, the others go on, and back on a sound disk it serves again.
#[test]
fn chaos_filling_a_nodes_volume_on_a_local_cluster_loses_nothing() {
    if disk_fault_possible(raftkv::ctl::fault::DiskFault::Full) {
        assert_disk_fault_passes("disk=full@follower:2s", "the volume is full", false);
    }
}

/// Where the tool a disk fault needs is missing, the local platform
/// refuses it before the run, naming what to install (here: nothing on
/// PATH, so neither libfiu's tools nor `mount`).
#[test]
fn disk_faults_without_their_tools_are_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let without_tools = Ctl::new().env("PATH", "/nonexistent");
    let chaos_with = |faults: &str| {
        without_tools.run(&[
            "chaos",
            "--platform",
            "local",
            "--data-dir",
            d,
            "--faults",
            faults,
            "--duration",
            "1s",
        ])
    };
    // As root the mount is missing; otherwise root is.
    for (fault, says, either, or) in [
        (
            "disk=fsync",
            "cannot fail a node's fsyncs: fiu-run is not installed",
            "fiu-utils",
            "fiu-utils",
        ),
        (
            "disk=full@leader",
            "cannot fill a node's volume",
            "needs root",
            "mount is not installed",
        ),
    ] {
        let why = chaos_with(fault).fails(3, says);
        assert!(why.contains(either) || why.contains(or), "{why}");
    }
    // `all` leaves both out, naming them, and goes on (to find no cluster
    // here): what cannot run here is said, not refused, nor skipped silently.
    let out = chaos_with("all");
    assert!(!out.success(), "{out}");
    for left_out in [
        "disk fsync@leader 3s left out: the local platform cannot fail a node's fsyncs",
        "disk full@follower 3s left out: the local platform cannot fill a node's volume",
    ] {
        assert!(out.stderr.contains(left_out), "{left_out:?} in {out}");
    }
}

/// Where the links between pods are out of reach, partitions and slow
/// links are refused before the run, saying what would be needed.
#[test]
fn docker_refuses_link_faults_before_the_run() {
    let out = raftctl(&[
        "chaos",
        "--platform",
        "docker",
        "--name",
        "no-such-cluster-links",
        "--faults",
        "kill,partition=bridge",
        "--duration",
        "1s",
    ]);
    let why = out.fails(3, "the docker platform cannot cut or slow the links");
    assert!(why.contains("docker network disconnect"), "{why}");
}

/// Docker cannot reach a pod's process or volume: disk faults are refused
/// before the run, saying what would be needed.
#[test]
fn docker_refuses_disk_faults_before_the_run() {
    for fault in ["disk=fsync", "disk=full@follower"] {
        let out = raftctl(&[
            "chaos",
            "--platform",
            "docker",
            "--name",
            "no-such-cluster-disks",
            "--faults",
            fault,
            "--duration",
            "1s",
        ]);
        let why = out.fails(3, "the docker platform cannot make a pod's disk fail");
        assert!(why.contains("libfiu inside the image"), "{why}");
    }
}

#[test]
fn deploy_on_the_local_platform_names_raftctl_local() {
    let out = raftctl(&["deploy", "--platform", "local"]);
    out.fails(3, "raftctl local --data-dir");
}

/// `raftctl deploy --platform docker` (twice: the second changes nothing),
/// `delete-pod --leader`, then `chaos` with the leader deleted every 5 s,
/// forced and graceful in turn.
#[test]
fn deploy_and_chaos_on_docker_lose_nothing() {
    let Some(image) = image::image() else {
        return;
    };
    let _one = one_at_a_time();
    let cluster = ClusterObjects::unique("rkc");
    let platform = ["--platform", "docker", "--name", &cluster.name];
    let deploy = [
        &[
            "deploy",
            "--image",
            &image,
            "--wait-timeout",
            "120s",
            "-o",
            "json",
        ][..],
        &platform,
    ]
    .concat();
    let actions = |report: &serde_json::Value| -> Vec<String> {
        let list = report.as_array().unwrap();
        list.iter()
            .map(|a| {
                format!(
                    "{} {}",
                    a["object"].as_str().unwrap(),
                    a["action"].as_str().unwrap()
                )
            })
            .collect()
    };
    let first = actions(&raftctl(&deploy).ok().json());
    let name = &cluster.name;
    assert_eq!(first.len(), 7, "{first:?}");
    assert!(
        first.contains(&format!("network/{name}-net created")),
        "{first:?}"
    );
    assert!(
        first.contains(&format!("volume/{name}-data-2 created")),
        "{first:?}"
    );
    assert!(
        first.contains(&format!("container/{name}-0 created")),
        "{first:?}"
    );
    let second = actions(&raftctl(&deploy).ok().json());
    assert!(
        second.iter().all(|a| a.ends_with(" unchanged")),
        "{second:?}"
    );
    // In table form deploy says how to reach the cluster from this host,
    // and those endpoints serve raftctl's key and status commands.
    let table = [&deploy[..deploy.len() - platform.len() - 2], &platform].concat();
    let out = raftctl(&table).ok();
    let endpoints = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export RAFTKV_ENDPOINTS="))
        .unwrap_or_else(|| panic!("no endpoints in deploy's output: {out}"))
        .to_string();
    let here = common::ctl::Ctl::new().endpoints(&endpoints);
    here.run(&["set", "from-host", "yes"]).ok();
    assert_eq!(here.run(&["get", "from-host"]).ok().stdout.trim(), "yes");
    here.run(&["status"]).ok();
    // Another replica count is scaling, not deploy's job.
    let args = [
        &["deploy", "--replicas", "5", "--image", &image][..],
        &platform,
    ]
    .concat();
    assert_eq!(raftctl(&args).code, Some(3));

    let args = [
        &["delete-pod", "--leader", "--grace", "0", "-o", "json"][..],
        &platform,
    ]
    .concat();
    let deleted = raftctl(&args).ok().json();
    assert_eq!(deleted["platform"], "docker");
    assert!(deleted["pod"].as_str().unwrap().starts_with(name.as_str()));

    let args = chaos_args("40s", "5s", &platform);
    let report = raftctl(&args).ok().json();
    assert_eq!(report["platform"], "docker");
    assert_chaos_passed(&report, 5, 4.0);
    println!(
        "RESULT chaos on docker: {} operations, {} faults, unavailability max {:.2}s",
        report["operations"]["ok"],
        report["faults"].as_array().unwrap().len(),
        report["unavailability_seconds"]["max"].as_f64().unwrap()
    );
}

/// `raftctl chaos` for `duration`, a fault every `interval`, forced and
/// graceful in turn, reporting as JSON, on `platform`'s cluster.
fn chaos_args<'a>(duration: &'a str, interval: &'a str, platform: &[&'a str]) -> Vec<&'a str> {
    let chaos = [
        "chaos",
        "--duration",
        duration,
        "--interval",
        interval,
        "--grace",
        "alternate",
        "-o",
        "json",
    ];
    [&chaos[..], platform].concat()
}

/// `raftctl chaos` for `duration`, a fault of `faults` every `interval`,
/// reporting as JSON, on the local cluster in `data_dir`.
fn faults_args<'a>(
    duration: &'a str,
    interval: &'a str,
    faults: &'a str,
    data_dir: &'a str,
) -> [&'a str; 13] {
    [
        "chaos",
        "--duration",
        duration,
        "--interval",
        interval,
        "--faults",
        faults,
        "-o",
        "json",
        "--platform",
        "local",
        "--data-dir",
        data_dir,
    ]
}
