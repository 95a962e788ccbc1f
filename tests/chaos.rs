//! `raftctl delete-pod` and `raftctl chaos` on the local platform, for real:
//! a `raftctl local` cluster, its leader deleted (forced and graceful) while
//! the checked workload runs; the run must lose no acknowledged write, stay
//! linearizable and apply every INCR exactly once.

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
    let args = [
        &[
            "chaos",
            "--duration",
            "24s",
            "--interval",
            "4s",
            "--grace",
            "alternate",
            "-o",
            "json",
        ][..],
        &platform,
    ]
    .concat();
    let report = json_of(&raftctl(&args), "chaos");
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["lost_writes"], 0);
    assert_eq!(report["linearizability"]["verdict"], "linearizable");
    assert_eq!(report["incr"]["ok"], true);
    let faults = report["faults"].as_array().unwrap();
    assert!(faults.len() >= 4, "{report:#}");
    assert!(faults.iter().any(|f| f["grace"] == "forced"));
    assert!(faults.iter().any(|f| f["grace"] == "graceful"));
    // Each fault hit the leader of the moment, and the cluster came back.
    assert!(faults.iter().all(|f| f["was_leader"] == true), "{report:#}");
    let ok = report["operations"]["ok"].as_u64().unwrap();
    assert!(ok > 1000, "the run did little work: {report:#}");
    assert!(report["incr"]["acknowledged"].as_u64().unwrap() > 50);
    let max_gap = report["unavailability_seconds"]["max"].as_f64().unwrap();
    assert!(
        max_gap < 4.0,
        "a fault left the cluster unavailable {max_gap}s"
    );
    local.stop();
}
