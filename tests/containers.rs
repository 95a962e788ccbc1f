//! Container tests: the image built from the Dockerfile (scripts/image.sh),
//! run as a StatefulSet stand-in on Docker (tests/containers/sts.rs) with
//! the env, args, mounts and security context of the chart's rendered pod
//! template (tests/containers/pod.rs). Each test asserts the cluster serves
//! and that no acknowledged write is lost, and prints one `RESULT` line.
//! Without Docker each test prints why and passes as skipped.

mod common;

#[path = "containers/api.rs"]
mod api;
#[path = "containers/cluster.rs"]
mod cluster;
#[path = "containers/jobs.rs"]
mod jobs;
#[path = "containers/load.rs"]
mod load;
#[path = "containers/pod.rs"]
mod pod;
#[path = "containers/sts.rs"]
mod sts;

use cluster::Env;
use common::docker;
use common::wait::wait_for;
use jobs::OneOff;
use load::Writer;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);
const PROGRESS: Duration = Duration::from_secs(30);

fn report(test: &str, r: &load::Report, extra: &str) {
    println!(
        "RESULT {test}: ok; {} acknowledged writes, none lost; longest write gap {:.2} s (from {:.2} s){extra}; first client errors: {:?}",
        r.acked,
        r.longest_gap.as_secs_f64(),
        r.gap_began.as_secs_f64(),
        r.errors.iter().take(3).collect::<Vec<_>>()
    );
}

/// Three fresh pods started together: the time to the first acknowledged
/// write (the closing note's figure).
#[test]
fn first_boot_time_to_first_write() {
    let Some(env) = Env::new("first-write") else {
        return;
    };
    let start = Instant::now();
    for i in 0..3 {
        env.sts.start(i);
    }
    env.retry(
        "first write",
        |c| async move { c.set(b"first", b"1").await },
    );
    let took = start.elapsed();
    env.wait_voters(&[0, 1, 2], READY);
    env.write_read("k", "v");
    println!(
        "RESULT first_boot_time_to_first_write: ok; {:.2} s from `docker run` of 3 fresh pods to the first acknowledged write",
        took.as_secs_f64()
    );
}

/// First boot in any order, with one pod's DNS name published seconds
/// after the others started (as a slow headless Service can).
#[test]
fn first_boot_any_order_with_late_dns() {
    let Some(env) = Env::new("first-boot") else {
        return;
    };
    let sts = &env.sts;
    sts.start(2);
    sts.start_without_dns(0);
    std::thread::sleep(Duration::from_millis(1500));
    sts.start(1);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !sts.ready(1) && !sts.ready(2),
        "founders must not serve before every founder answered"
    );
    sts.publish_dns(0);
    for i in 0..3 {
        sts.wait_ready(i, READY);
    }
    env.wait_voters(&[0, 1, 2], READY);
    let ids: std::collections::BTreeSet<String> = (0..3)
        .map(|i| {
            let addr = sts.addr(i, sts.template.client_port).unwrap();
            env.rt
                .block_on(env.client().status(&addr))
                .unwrap()
                .cluster_id
        })
        .collect();
    assert_eq!(ids.len(), 1, "one cluster, not several: {ids:?}");
    env.write_read("late-dns", "ok");
    println!(
        "RESULT first_boot_any_order_with_late_dns: ok; order 2, 0 (no DNS for 5.5 s), 1; one cluster"
    );
}

/// Pods deleted and recreated with their volumes (a follower, then the
/// leader) while a client writes: each comes back as itself.
#[test]
fn delete_and_recreate_pods_while_writing() {
    let Some(env) = Env::new("recreate") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "recreate");
    writer.wait_progress(50, PROGRESS);
    let leader = env.leader();
    for i in [(leader + 1) % 3, leader] {
        assert_eq!(sts.delete(i), 0, "pod {i} exits 0 on SIGTERM");
        sts.start(i);
        sts.wait_ready(i, READY);
        assert!(
            sts.logs(i).contains("\"fresh\":false"),
            "pod {i} restarted from its volume"
        );
        writer.wait_progress(50, PROGRESS);
    }
    env.wait_voters(&[0, 1, 2], READY);
    let r = writer.finish(sts);
    report(
        "delete_and_recreate_pods_while_writing",
        &r,
        &format!("; follower then leader (node {leader}) recreated"),
    );
}

/// A pod whose volume was lost (here the leader's) comes back empty and
/// rejoins by itself; the cluster then relies on it for a quorum.
#[test]
fn lost_volume_rejoins_by_itself() {
    let Some(env) = Env::new("lost-volume") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "lost");
    writer.wait_progress(50, PROGRESS);
    let lost = env.leader();
    sts.kill(lost);
    sts.wipe_volume(lost);
    let start = Instant::now();
    sts.start(lost);
    env.wait_voters(&[0, 1, 2], READY);
    sts.wait_ready(lost, READY);
    let healed = start.elapsed();
    // The node's promotion task logs it once it sees the answer (or, if an
    // answer was lost, the membership).
    sts.wait_log(lost, "auto-join: added as a learner", PROGRESS);
    sts.wait_log(lost, "auto-join: promoted to voter", PROGRESS);
    writer.wait_progress(50, PROGRESS);
    // The new incarnation now counts: with another member down, the quorum
    // needs it.
    let other = (lost + 1) % 3;
    assert_eq!(sts.delete(other), 0);
    writer.wait_progress(50, PROGRESS);
    sts.start(other);
    sts.wait_ready(other, READY);
    let r = writer.finish(sts);
    report(
        "lost_volume_rejoins_by_itself",
        &r,
        &format!(
            "; leader {lost} lost its volume, voter again after {:.1} s, then carried the quorum",
            healed.as_secs_f64()
        ),
    );
}

/// Scale 3 → 5 (new ordinals join and are promoted, same pod template),
/// then 5 → 3 (members removed before their pods go).
#[test]
fn scale_3_to_5_to_3() {
    let Some(env) = Env::new("scale") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "scale");
    writer.wait_progress(50, PROGRESS);
    sts.start(3);
    sts.start(4);
    env.wait_voters(&[0, 1, 2, 3, 4], READY);
    sts.wait_ready(3, READY);
    sts.wait_ready(4, READY);
    writer.wait_progress(50, PROGRESS);
    let mut events = Vec::new();
    for i in [4, 3] {
        let leader = env.leader();
        let at = writer.elapsed().as_secs_f64();
        events.push(format!("{at:.2} s remove {i} (leader {leader})"));
        env.retry("member remove", |c| async move { c.remove_member(i).await });
        assert_eq!(sts.delete(i), 0);
        let at = writer.elapsed().as_secs_f64();
        events.push(format!("{at:.2} s pod {i} gone"));
    }
    env.wait_voters(&[0, 1, 2], READY);
    writer.wait_progress(50, PROGRESS);
    let r = writer.finish(sts);
    report("scale_3_to_5_to_3", &r, &format!("; {}", events.join(", ")));
}

/// `kubectl rollout restart`: one pod at a time, highest ordinal first,
/// each waited for until ready. Reports the longest write gap.
#[test]
fn rolling_restart() {
    let Some(env) = Env::new("rolling") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "rolling");
    writer.wait_progress(50, PROGRESS);
    let start = Instant::now();
    let mut events = Vec::new();
    for i in [2, 1, 0] {
        let leader = env.leader();
        events.push(format!(
            "{:.2} s delete {i} (leader {leader})",
            writer.elapsed().as_secs_f64()
        ));
        assert_eq!(sts.delete(i), 0, "pod {i} exits 0 on SIGTERM");
        sts.start(i);
        events.push(format!(
            "{:.2} s started {i}",
            writer.elapsed().as_secs_f64()
        ));
        sts.wait_ready(i, READY);
        events.push(format!("{:.2} s ready {i}", writer.elapsed().as_secs_f64()));
    }
    let took = start.elapsed();
    writer.wait_progress(50, PROGRESS);
    env.wait_voters(&[0, 1, 2], READY);
    let r = writer.finish(sts);
    assert!(
        r.longest_gap < Duration::from_secs(10),
        "a rolling restart stopped writes for {:?}",
        r.longest_gap
    );
    report(
        "rolling_restart",
        &r,
        &format!(
            "; 3 pods restarted in {:.1} s: {}",
            took.as_secs_f64(),
            events.join(", ")
        ),
    );
}

/// The leader cut from the network: the others elect a leader and keep
/// serving; reconnected, the old leader follows and catches up.
#[test]
fn leader_network_disconnect_and_reconnect() {
    let Some(env) = Env::new("partition") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "partition");
    writer.wait_progress(50, PROGRESS);
    let old = env.leader();
    let cut = Instant::now();
    sts.disconnect(old);
    let new = wait_for("a new leader", PROGRESS, || {
        Some(env.leader()).filter(|l| *l != old)
    });
    let failover = cut.elapsed();
    writer.wait_progress(50, PROGRESS);
    sts.connect(old);
    sts.wait_ready(old, READY);
    let addr = sts.addr(old, sts.template.client_port).unwrap();
    wait_for("the old leader to follow", PROGRESS, || {
        let s = env.rt.block_on(env.client().status(&addr)).ok()?;
        (s.role == "follower" && s.leader.is_some()).then_some(())
    });
    writer.wait_progress(50, PROGRESS);
    let r = writer.finish(sts);
    report(
        "leader_network_disconnect_and_reconnect",
        &r,
        &format!(
            "; node {new} led {:.2} s after node {old} was cut",
            failover.as_secs_f64()
        ),
    );
}

/// SIGTERM to the leader's container: the node is PID 1, hands leadership
/// over, and exits 0 well within the grace period.
#[test]
fn sigterm_to_leader_hands_over_and_exits_0() {
    let Some(env) = Env::new("sigterm") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "sigterm");
    writer.wait_progress(50, PROGRESS);
    let leader = env.leader();
    let c = sts.container(leader);
    // The container's PID 1, seen from the host (the image has no shell).
    let pid = docker::must(&["inspect", "-f", "{{.State.Pid}}", &c]);
    let pid1 = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        pid1.starts_with("/usr/local/bin/raftkv"),
        "PID 1 is the node, not a shell: {pid1:?}"
    );
    let start = Instant::now();
    let code = sts.stop(leader);
    let exited = start.elapsed();
    let log = sts.logs(leader);
    sts.kill(leader);
    assert!(
        log.contains("transferring leadership before shutdown"),
        "the leader hands over: {log}"
    );
    assert_eq!(code, 0, "the leader exits 0 on SIGTERM");
    let grace = Duration::from_secs(sts.template.grace_seconds);
    assert!(exited < grace, "exit took {exited:?}, grace is {grace:?}");
    let successor = wait_for("a new leader", PROGRESS, || {
        Some(env.leader()).filter(|l| *l != leader)
    });
    writer.wait_progress(50, PROGRESS);
    sts.start(leader);
    sts.wait_ready(leader, READY);
    let r = writer.finish(sts);
    report(
        "sigterm_to_leader_hands_over_and_exits_0",
        &r,
        &format!(
            "; leader {leader} exited 0 in {:.2} s (grace {} s), node {successor} leads",
            exited.as_secs_f64(),
            grace.as_secs()
        ),
    );
}

/// A directory a container's non-root user (the image's 65532, as the pod
/// security context's fsGroup would make a volume) can read and write.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn path_string(p: &Path) -> String {
    p.display().to_string()
}

/// The scale-down hook on the StatefulSet stand-in: the Job Helm renders
/// for `helm upgrade` from 5 to 3 replicas (scripts/chart.py render
/// --upgrade-from 5), its command and args as rendered, run as a container
/// on the cluster's network against 5 pods, with an API server stand-in
/// (tests/containers/api.rs) behind the StatefulSet. First with two
/// members down, so that the 3 left would have no quorum: it refuses and
/// nothing changes (5 voters, 5 pods, no scale patch, writes go on). Then
/// with every member up: members 4 and 3 removed, the StatefulSet scaled
/// to 3 (its pods 4 and 3 deleted), 3 voters, no acknowledged write lost.
#[test]
fn scale_down_hook_removes_members_or_refuses() {
    let Some(env) = Env::new("hook") else {
        return;
    };
    let sts = &env.sts;
    let objects = jobs::render(&sts::root(), &sts.template.image, &["replicas=3"], Some(5));
    let job = jobs::pod_of(&objects, "Job", "/spec/template/spec");
    let hook = OneOff::of(job, &job["containers"][0], "raftkv-scale-down-x");
    assert_eq!(
        hook.argv[..2],
        ["/usr/local/bin/raftctl", "scale"],
        "{:?}",
        hook.argv
    );
    let labels: api::Labels = serde_json::from_value(
        jobs::pod_of(&objects, "StatefulSet", "/spec/template/metadata/labels").clone(),
    )
    .unwrap();
    let api = api::FakeApi::start(sts.clone(), labels);
    let creds = shared_dir();
    let config = creds.path().join("config");
    std::fs::write(&config, api.kubeconfig("/var/run/kube/ca.crt")).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["kubernetes.default.svc".into()]).unwrap();
    std::fs::write(creds.path().join("ca.crt"), ca.cert.pem()).unwrap();
    for file in ["config", "ca.crt"] {
        let path = creds.path().join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // What the kubelet gives a pod: the API server's address, the service
    // account's credentials (here a kubeconfig: the stand-in speaks plain
    // HTTP), and the cluster DNS search path with ndots:5.
    let kubelet: Vec<String> = [
        "-e",
        &format!("KUBERNETES_SERVICE_HOST={}", api.address.ip()),
        "-e",
        &format!("KUBERNETES_SERVICE_PORT={}", api.address.port()),
        "-e",
        "KUBECONFIG=/var/run/kube/config",
        "-v",
        &format!("{}:/var/run/kube:ro", path_string(creds.path())),
        "--dns-search",
        "default.svc.cluster.local",
        "--dns-search",
        "svc.cluster.local",
        "--dns-search",
        "cluster.local",
        "--dns-opt",
        "ndots:5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    for i in 0..5 {
        sts.start(i);
    }
    for i in 0..5 {
        sts.wait_ready(i, READY);
    }
    env.wait_voters(&[0, 1, 2, 3, 4], READY);
    let writer = Writer::start(sts.clone(), "hook");
    writer.wait_progress(50, PROGRESS);

    // Refusal: members 1 and 2 down; voters 0, 1, 2 would keep no quorum.
    sts.kill(1);
    sts.kill(2);
    writer.wait_progress(20, PROGRESS);
    let (code, out) = hook.run(
        &format!("{}-hook-1", sts.prefix),
        &sts.network,
        &[],
        &kubelet,
    );
    assert_ne!(code, 0, "the hook must refuse:\n{out}");
    assert!(out.contains("quorum"), "the refusal says why:\n{out}");
    let refused_with = out.lines().last().unwrap_or("").to_string();
    assert!(
        !api.requests().iter().any(|r| r.starts_with("PATCH")),
        "{:?}",
        api.requests()
    );
    assert_eq!(sts.ordinals(), [0, 3, 4]);
    let members = env.members();
    assert_eq!(members.members.iter().filter(|m| m.voter).count(), 5);
    writer.wait_progress(20, PROGRESS);

    // Every member back: the hook removes 4 and 3 and scales to 3.
    sts.start(1);
    sts.start(2);
    sts.wait_ready(1, READY);
    sts.wait_ready(2, READY);
    let started = Instant::now();
    let (code, out) = hook.run(
        &format!("{}-hook-2", sts.prefix),
        &sts.network,
        &[],
        &kubelet,
    );
    let took = started.elapsed();
    assert_eq!(code, 0, "the hook failed:\n{out}");
    env.wait_voters(&[0, 1, 2], READY);
    assert_eq!(sts.ordinals(), [0, 1, 2]);
    let requests = api.requests();
    let listed = requests
        .iter()
        .find(|r| r.starts_with("GET /api/v1/namespaces/default/pods?"))
        .expect("the pods were listed");
    assert!(
        listed.contains("labelSelector=app.kubernetes.io%2Finstance%3Draftkv%2Capp.kubernetes.io%2Fname%3Draftkv"),
        "{listed}"
    );
    let patches: Vec<&String> = requests.iter().filter(|r| r.starts_with("PATCH")).collect();
    assert_eq!(patches.len(), 2, "{requests:?}");
    assert!(patches[0].contains(r#""replicas":4"#) && patches[1].contains(r#""replicas":3"#));
    writer.wait_progress(50, PROGRESS);
    env.write_read("after-hook", "3 voters");
    let r = writer.finish(sts);
    report(
        "scale_down_hook_removes_members_or_refuses",
        &r,
        &format!(
            "; refused with 2 of 5 down ({refused_with}); 5 -> 3 by the rendered hook Job in {:.2} s",
            took.as_secs_f64()
        ),
    );
}

/// Backup and restore through the chart on the stand-in: the backup
/// CronJob's container as rendered (`raftctl snapshot save --dir /backup
/// --keep 2` against the client Service) runs three times while a writer
/// goes on, leaving the newest 2 files; the restore init container as
/// rendered with restore.fromSnapshot seeds three fresh volumes from the
/// newest, and a fresh 3-pod StatefulSet starts on them: every write
/// acknowledged before that save began is there, a TTL set before it still
/// runs, and writes are accepted. Rerun on a started member's volume and
/// for an ordinal above the founders, the init container changes nothing.
#[test]
fn backup_cronjob_and_restore_init_container_round_trip() {
    let Some(env) = Env::new("backup") else {
        return;
    };
    let sts = &env.sts;
    let root = sts::root();
    env.start_ready(3);
    env.retry("set", |c| async move { c.set(b"ttl/key", b"kept").await });
    env.retry(
        "expire",
        |c| async move { c.expire(b"ttl/key", 3600).await },
    );
    let writer = Writer::start(sts.clone(), "backup");
    writer.wait_progress(100, PROGRESS);

    let objects = jobs::render(
        &root,
        &sts.template.image,
        &["backup.enabled=true,backup.keep=2"],
        None,
    );
    let spec = jobs::pod_of(&objects, "CronJob", "/spec/jobTemplate/spec/template/spec");
    let backup = OneOff::of(spec, &spec["containers"][0], "raftkv-backup-x");
    let endpoint = &backup.argv[backup.argv.iter().position(|a| a == "--endpoints").unwrap() + 1];
    let service = endpoint.rsplit_once(':').unwrap().0.to_string();
    let dir = shared_dir();
    let mut last_start = Instant::now();
    let mut saves = Vec::new();
    for run in 0..3 {
        // The client Service: its name resolves to a member (kube-proxy's
        // part); a follower sends the save on to the leader.
        let member = sts.addr(run % 3, sts.template.client_port).unwrap();
        let ip = member.rsplit_once(':').unwrap().0;
        last_start = Instant::now();
        let (code, out) = backup.run(
            &format!("{}-backup-{run}", sts.prefix),
            &sts.network,
            &[("backup", path_string(dir.path()))],
            &["--add-host".into(), format!("{service}:{ip}")],
        );
        assert_eq!(code, 0, "backup run {run} failed:\n{out}");
        saves.push(format!("{:.2} s", last_start.elapsed().as_secs_f64()));
        writer.wait_progress(30, PROGRESS);
    }
    let acked = writer.acked_before(last_start);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "--keep 2 after 3 saves: {files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("raftkv-") && f.ends_with(".snap"))
    );
    let newest = files
        .iter()
        .max_by_key(|f| {
            f.rsplit_once('-')
                .unwrap()
                .1
                .trim_end_matches(".snap")
                .parse::<u64>()
                .unwrap()
        })
        .unwrap()
        .clone();
    let r = writer.finish(sts);

    // A fresh StatefulSet seeded by the restore init container.
    let fresh = Arc::new(sts::StatefulSet::new("restored", &sts.template.image));
    let objects = jobs::render(
        &root,
        &sts.template.image,
        &[
            &format!("restore.fromSnapshot.enabled=true,restore.fromSnapshot.file={newest}"),
            "restore.fromSnapshot.volume.persistentVolumeClaim.claimName=raftkv-backup",
        ],
        None,
    );
    let pod = jobs::pod_of(&objects, "StatefulSet", "/spec/template/spec");
    let init = |i: u64| OneOff::of(pod, &pod["initContainers"][0], &fresh.template.pod_name(i));
    let restore_dir = path_string(dir.path());
    let run_init = |i: u64, what: &str| {
        init(i).run(
            &format!("{}-restore-{i}-{what}", fresh.prefix),
            &fresh.network,
            &[("data", fresh.claim(i)), ("restore", restore_dir.clone())],
            &[],
        )
    };
    let started = Instant::now();
    let mut cluster_ids = std::collections::BTreeSet::new();
    for i in 0..3 {
        let (code, out) = run_init(i, "first");
        assert_eq!(code, 0, "restore of pod {i} failed:\n{out}");
        let id = out
            .split("of new cluster ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("pod {i}: {out}"));
        cluster_ids.insert(id.to_string());
    }
    let restored_in = started.elapsed();
    assert_eq!(cluster_ids.len(), 1, "founders disagree: {cluster_ids:?}");
    for i in 0..3 {
        fresh.start(i);
    }
    for i in 0..3 {
        fresh.wait_ready(i, READY);
    }
    load::verify(&fresh, "backup", &acked);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ttl = wait_for("the restored leader", READY, || {
        rt.block_on(async {
            let c = fresh.leader_client().await?;
            let ttl = c.ttl(b"ttl/key").await.ok()?;
            let value = c.get(b"ttl/key").await.ok()?;
            c.set(b"after-restore", b"accepted").await.ok()?;
            Some((ttl, value))
        })
    });
    assert_eq!(ttl.1.as_deref(), Some(&b"kept"[..]));
    match ttl.0 {
        raftkv::client::Ttl::Seconds(s) => assert!((3000..=3600).contains(&s), "ttl {s}"),
        other => panic!("the TTL was lost: {other:?}"),
    }
    // The init container again: on a member's volume, and for a pod above
    // the founders (a later scale-up), it restores nothing.
    let (code, out) = run_init(0, "again");
    assert!(
        code == 0 && out.contains("already holds a node's data"),
        "{out}"
    );
    let (code, out) = run_init(3, "scale-up");
    assert!(
        code == 0 && out.contains("not one of the new cluster's voters"),
        "{out}"
    );
    let members = rt.block_on(async {
        fresh
            .leader_client()
            .await
            .unwrap()
            .members()
            .await
            .unwrap()
    });
    assert_eq!(members.members.iter().filter(|m| m.voter).count(), 3);
    report(
        "backup_cronjob_and_restore_init_container_round_trip",
        &r,
        &format!(
            "; 3 saves under load by the rendered CronJob container ({}), {} kept; {} keys acknowledged before the \
             last save all in the restored cluster {} (3 init containers in {:.2} s), TTL {:?} left",
            saves.join(", "),
            files.len(),
            acked.len(),
            cluster_ids.iter().next().unwrap(),
            restored_in.as_secs_f64(),
            ttl.0
        ),
    );
}

/// A Secret's files as the kubelet would mount them, made by the test:
/// one file per key in a directory the pods' non-root user can read.
fn secret_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (key, text) in files {
        let path = dir.path().join(key);
        std::fs::write(&path, text).unwrap();
        // The pod's fsGroup would make a 0440 Secret file readable by the
        // node's user; a bind mount keeps the host's owner, so: world-readable.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

/// The image with TLS from an existing Secret (`tls.source=existingSecret`,
/// client certificates required), the certificates made here with rcgen:
/// the members' certificate names every pod's DNS name and the client
/// Service. raftctl of the image, with the CA and a client certificate as
/// the chart's `helm test` pod mounts them, writes and reads; plaintext,
/// a client without a certificate and one from another CA are refused (the
/// node logs why), and so is the host's plaintext client. Then, with auth
/// enabled and `auth.testUser.existingSecret` naming a Secret with a
/// user's name and password, the rendered `helm test` pod's two containers
/// (write, then read back) pass as that user, and fail with a wrong
/// password although their client certificate is root's.
#[test]
fn tls_cluster_serves_clients_with_the_ca_and_helm_test_runs_as_its_user() {
    use raftkv::tls::generate::{Authority, Leaf};
    let ca = Authority::new("raftkv test ca").unwrap();
    let mut hosts: Vec<String> = (0..3)
        .map(|i| format!("raftkv-{i}.raftkv-headless.default.svc.cluster.local"))
        .collect();
    hosts.push("raftkv".into());
    let member = ca.issue(&Leaf::server("raftkv", &hosts)).unwrap();
    let root = ca.issue(&Leaf::user("root")).unwrap();
    let other_ca = Authority::new("another ca").unwrap();
    let stranger = other_ca.issue(&Leaf::user("root")).unwrap();
    let tls_files = |pair: &raftkv::tls::generate::Pair, ca_pem: &str| {
        secret_dir(&[
            ("ca.crt", ca_pem),
            ("tls.crt", &pair.cert_pem),
            ("tls.key", &pair.key_pem),
        ])
    };
    let members = tls_files(&member, &ca.cert_pem);
    let client = tls_files(&root, &ca.cert_pem);
    let strangers = tls_files(&stranger, &ca.cert_pem);
    let test_user = secret_dir(&[("username", "helm-test"), ("password", "t3st-pw")]);
    let wrong_user = secret_dir(&[("username", "helm-test"), ("password", "wrong")]);
    let secrets: pod::Secrets = [
        ("raftkv-members", &members),
        ("raftkv-client", &client),
        ("raftkv-helm-test", &test_user),
    ]
    .into_iter()
    .map(|(name, dir)| (name.to_string(), dir.path().to_path_buf()))
    .collect();
    let tls_set = "tls.enabled=true,tls.source=existingSecret,\
                   tls.existingSecret.name=raftkv-members,tls.existingSecret.clientName=raftkv-client";
    let Some(env) = Env::with_values("tls", &[tls_set], &secrets) else {
        return;
    };
    let sts = &env.sts;
    // Readiness is plain HTTP: the probes work as without TLS.
    env.start_ready(3);

    // raftctl as the rendered helm test pod runs it, other commands.
    let objects = jobs::render(
        &sts::root(),
        &sts.template.image,
        &[tls_set, "auth.testUser.existingSecret=raftkv-helm-test"],
        None,
    );
    let test_pod = objects
        .iter()
        .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == "raftkv-test")
        .expect("the helm test pod")["spec"]
        .clone();
    // The helm test pod's containers: "initContainers" (write) or
    // "containers" (read-back), their Secrets' values from `secrets`.
    let test_container = |which: &str, secrets: &pod::Secrets| {
        OneOff::with_secrets(&test_pod, &test_pod[which][0], "raftkv-test", secrets)
    };
    let write = test_container("initContainers", &secrets);
    let read_back = test_container("containers", &secrets);
    let endpoint = &write.argv[write.argv.iter().position(|a| a == "--endpoints").unwrap() + 1];
    let service = endpoint.rsplit_once(':').unwrap().0.to_string();
    assert_eq!(service, "raftkv", "the test pod dials the client Service");
    let runs = std::cell::Cell::new(0);
    // Runs `c` with `args` (None: as rendered) and the client Service
    // resolving to pod 0 (a follower forwards or redirects in the network).
    let run = |c: &OneOff, args: Option<&[&str]>, tls_dir: &Path| {
        let mut c = c.clone();
        if let Some(args) = args {
            c.argv = ["/usr/local/bin/raftctl", "--endpoints", endpoint.as_str()]
                .iter()
                .chain(args)
                .map(|s| s.to_string())
                .collect();
        }
        runs.set(runs.get() + 1);
        let ip = sts.addr(0, sts.template.client_port).unwrap();
        c.run(
            &format!("{}-raftctl-{}", sts.prefix, runs.get()),
            &sts.network,
            &[("tls", path_string(tls_dir))],
            &[
                "--add-host".into(),
                format!("{service}:{}", ip.rsplit_once(':').unwrap().0),
            ],
        )
    };
    let without = |names: &[&str]| {
        let mut c = write.clone();
        c.env.retain(|(k, _)| !names.contains(&k.as_str()));
        c
    };
    // TLS with root's certificate, no test user.
    let as_root = without(&["RAFTKV_USER", "RAFTKV_PASSWORD"]);
    let ctl = |args: &[&str]| run(&as_root, Some(args), client.path());
    let ok = |args: &[&str]| {
        let (code, out) = wait_for(format!("raftctl {args:?}"), PROGRESS, || {
            let (code, out) = ctl(args);
            (code == 0).then_some((code, out))
        });
        assert_eq!(code, 0);
        out
    };
    ok(&["set", "tls/k", "over-tls"]);
    assert_eq!(ok(&["get", "tls/k"]).trim(), "over-tls");

    // Refused: plaintext, no client certificate, another CA; the node
    // says why in its log.
    let plaintext = without(&[
        "RAFTKV_CACERT",
        "RAFTKV_CERT",
        "RAFTKV_KEY",
        "RAFTKV_USER",
        "RAFTKV_PASSWORD",
    ]);
    let no_cert = without(&[
        "RAFTKV_CERT",
        "RAFTKV_KEY",
        "RAFTKV_USER",
        "RAFTKV_PASSWORD",
    ]);
    for (what, c, dir, logged) in [
        (
            "plaintext",
            &plaintext,
            client.path(),
            "sent plaintext to a TLS port",
        ),
        (
            "no certificate",
            &no_cert,
            client.path(),
            "presented no certificate",
        ),
        (
            "another CA's certificate",
            &as_root,
            strangers.path(),
            "not signed by a trusted CA",
        ),
    ] {
        let (code, out) = run(c, Some(&["--timeout", "3s", "get", "tls/k"]), dir);
        assert_ne!(code, 0, "a client with {what} was answered:\n{out}");
        sts.wait_log(0, logged, PROGRESS);
    }
    // The host's client, plaintext, to a pod's address: refused too.
    let addr = sts.addr(0, sts.template.client_port).unwrap();
    assert!(
        env.rt.block_on(env.client().status(&addr)).is_err(),
        "a plaintext status was answered"
    );

    // Auth on, as root (the client certificate's name), with a user for
    // helm test that may touch helm-test/ only.
    for (args, new_password) in [
        (&["user", "add", "root"][..], Some("r00t-pw")),
        (&["user", "grant", "root", "root"][..], None),
        (&["role", "add", "helm-test"][..], None),
        (
            &["role", "grant", "helm-test", "helm-test/", "readwrite"][..],
            None,
        ),
        (&["user", "add", "helm-test"][..], Some("t3st-pw")),
        (&["user", "grant", "helm-test", "helm-test"][..], None),
        (&["auth", "enable"][..], None),
    ] {
        let mut c = as_root.clone();
        if let Some(p) = new_password {
            c.env.push(("RAFTKV_NEW_PASSWORD".into(), p.into()));
        }
        let (code, out) = run(&c, Some(args), client.path());
        assert_eq!(code, 0, "raftctl {args:?}:\n{out}");
    }

    // helm test as rendered: both containers, as the test user.
    let (code, out) = run(&write, None, client.path());
    assert_eq!(code, 0, "helm test write:\n{out}");
    let (code, out) = run(&read_back, None, client.path());
    assert_eq!(code, 0, "helm test read-back:\n{out}");
    let key = &write.argv[write.argv.len() - 2];
    let (code, out) = run(&as_root, Some(&["get", key]), client.path());
    assert_eq!(
        (code, out.trim()),
        (0, "read-back"),
        "{key} after helm test"
    );
    // The test user's identity is what counts: a wrong password fails
    // although the client certificate is root's; and the user may not
    // write outside helm-test/.
    let wrong: pod::Secrets = [(
        "raftkv-helm-test".to_string(),
        wrong_user.path().to_path_buf(),
    )]
    .into_iter()
    .collect();
    let wrong_write = test_container("initContainers", &wrong);
    let (code, out) = run(&wrong_write, None, client.path());
    assert!(
        code != 0 && out.contains("wrong user name or password"),
        "a wrong password passed, or failed for another reason:\n{out}"
    );
    let (code, out) = run(&write, Some(&["set", "tls/k", "x"]), client.path());
    assert!(
        code != 0 && out.contains("no WRITE permission"),
        "the test user wrote outside helm-test/, or failed for another reason:\n{out}"
    );
    println!(
        "RESULT tls_cluster_serves_clients_with_the_ca_and_helm_test_runs_as_its_user: ok; raftctl with the CA and \
         root's certificate read and wrote; plaintext, no certificate and another CA refused (logged); helm test's \
         write and read-back passed as user helm-test, a wrong password and a key outside helm-test/ refused"
    );
}
