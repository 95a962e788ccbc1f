//! `raftctl delete-pod` and `raftctl chaos` for real, on the local platform
//! (a `raftctl local` cluster) and on Docker (containers made by `raftctl
//! deploy --platform docker` from the image tests/containers.rs builds):
//! the leader deleted (forced and graceful) while the checked workload
//! runs; the run must lose no acknowledged write, stay linearizable and
//! apply every INCR exactly once.

#[allow(dead_code)]
#[path = "containers/docker.rs"]
mod docker;
#[path = "containers/image.rs"]
mod image;
#[path = "common/local.rs"]
mod local;

use std::process::{Command, Output};

use local::{Local, RAFTCTL, free_base_port};

fn raftctl(args: &[&str]) -> Output {
    Command::new(RAFTCTL)
        .args(args)
        .env_remove("RAFTKV_PLATFORM")
        .output()
        .unwrap()
}

/// The checks every chaos run must pass: nothing lost, linearizable,
/// exactly-once INCR, each fault on the leader, forced and graceful both,
/// real work done, and the cluster back within `max_gap` seconds.
fn assert_chaos_passed(report: &serde_json::Value, min_faults: usize, max_gap: f64) {
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["lost_writes"], 0);
    assert_eq!(report["linearizability"]["verdict"], "linearizable");
    assert_eq!(report["incr"]["ok"], true);
    // The run ends with the members' state hashes compared at one index.
    assert_eq!(report["replica_states"]["verdict"], "equal", "{report:#}");
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

/// One chaos run at a time: each measures unavailability, and two
/// clusters on two shared cores would measure each other.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_of(out: &Output, what: &str) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
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
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no raftctl local runs on"), "{stderr}");
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
    let deleted = json_of(&raftctl(&args), "delete-pod");
    assert_eq!(deleted["platform"], "local");
    assert_eq!(deleted["grace"], "forced");
    let pod = deleted["pod"].as_str().unwrap().to_string();
    assert!(pod.starts_with("node-"), "{deleted}");
    // A named pod that does not exist is bad input (exit 3).
    let args = [&["delete-pod", "node-7"][..], &platform].concat();
    assert_eq!(raftctl(&args).status.code(), Some(3));

    // chaos: a fault every 4 s for 24 s, forced and graceful in turn.
    let args = chaos_args("24s", "4s", &platform);
    let report = json_of(&raftctl(&args), "chaos");
    assert_chaos_passed(&report, 4, 4.0);
    local.stop();
}

#[test]
fn deploy_on_the_local_platform_names_raftctl_local() {
    let out = raftctl(&["deploy", "--platform", "local"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("raftctl local --data-dir"), "{stderr}");
}

/// The Docker objects of one `raftctl deploy --platform docker` (all carry
/// its label), removed on drop even when the test failed.
struct DockerCluster {
    name: String,
}

impl DockerCluster {
    fn label(&self) -> String {
        format!("label=io.raftkv.cluster={}", self.name)
    }

    fn ids(&self, kind: &[&str]) -> Vec<String> {
        let label = self.label();
        let args = [kind, &["-q", "--filter", &label]].concat();
        docker::docker(&args)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        for id in self.ids(&["ps", "-a"]) {
            let _ = docker::docker(&["rm", "-f", &id]);
        }
        for id in self.ids(&["volume", "ls"]) {
            let _ = docker::docker(&["volume", "rm", "-f", &id]);
        }
        for id in self.ids(&["network", "ls"]) {
            let _ = docker::docker(&["network", "rm", &id]);
        }
    }
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
    let cluster = DockerCluster {
        name: format!("rkc-{}-{:04x}", std::process::id(), rand::random::<u16>()),
    };
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
    let first = actions(&json_of(&raftctl(&deploy), "deploy"));
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
    let second = actions(&json_of(&raftctl(&deploy), "second deploy"));
    assert!(
        second.iter().all(|a| a.ends_with(" unchanged")),
        "{second:?}"
    );
    // Another replica count is scaling, not deploy's job.
    let args = [
        &["deploy", "--replicas", "5", "--image", &image][..],
        &platform,
    ]
    .concat();
    assert_eq!(raftctl(&args).status.code(), Some(3));

    let args = [
        &["delete-pod", "--leader", "--grace", "0", "-o", "json"][..],
        &platform,
    ]
    .concat();
    let deleted = json_of(&raftctl(&args), "delete-pod");
    assert_eq!(deleted["platform"], "docker");
    assert!(deleted["pod"].as_str().unwrap().starts_with(name.as_str()));

    let args = chaos_args("40s", "5s", &platform);
    let report = json_of(&raftctl(&args), "chaos");
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
