//! The README walkthrough as a test: `raftctl local` starts a 3-node cluster,
//! raftctl sets, gets, counts, compares-and-swaps, expires and deletes keys,
//! shows status, survives a leader SIGKILL, and a restarted `raftctl local`
//! on the same data directory finds every key. Exit codes and stderr follow
//! docs/raftctl.md.

#[path = "common/local.rs"]
mod local;

use std::process::{Command, Output};
use std::time::Instant;

use local::{Local, RAFTCTL, free_base_port, signal};

/// Runs raftctl against the cluster at `base`.
fn ctl(base: u16, args: &[&str]) -> Output {
    let endpoints: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", base + 10 * i))
        .collect();
    Command::new(RAFTCTL)
        .args(args)
        .env("RAFTKV_ENDPOINTS", endpoints.join(","))
        .output()
        .unwrap()
}

/// raftctl's stdout, asserting exit code `code`.
fn expect(base: u16, args: &[&str], code: i32) -> String {
    let out = ctl(base, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "raftctl {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn readme_walkthrough_with_raftctl_local() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let local = Local::start(dir.path(), base);

    assert_eq!(expect(base, &["set", "greeting", "hello"], 0).trim(), "OK");
    assert_eq!(expect(base, &["get", "greeting"], 0), "hello");
    assert_eq!(expect(base, &["incr", "visits"], 0).trim(), "1");
    assert_eq!(expect(base, &["incr", "visits"], 0).trim(), "2");
    // A missing key: nothing on stdout, a note on stderr, exit 1.
    let out = ctl(base, &["get", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
    // CAS: a wrong expectation changes nothing.
    expect(base, &["cas", "greeting", "bye", "x"], 1);
    expect(base, &["cas", "greeting", "hello", "hi"], 0);
    assert_eq!(expect(base, &["get", "greeting"], 0), "hi");
    // INCR on text is refused (exit 1), an empty key is bad input (exit 3);
    // neither changes anything.
    expect(base, &["incr", "greeting"], 1);
    expect(base, &["set", "", "v"], 3);
    assert_eq!(expect(base, &["get", "greeting"], 0), "hi");
    // Expiry and TTL; DEL.
    expect(base, &["set", "temp", "t"], 0);
    expect(base, &["expire", "temp", "100"], 0);
    let ttl: f64 = expect(base, &["ttl", "temp"], 0).trim().parse().unwrap();
    assert!(ttl > 90.0 && ttl <= 100.0, "ttl {ttl}");
    expect(base, &["del", "temp"], 0);
    expect(base, &["get", "temp"], 1);

    let table = expect(base, &["status"], 0);
    let roles: Vec<&str> = table
        .lines()
        .skip(2) // "cluster ...: leader node N, ..." and the column headers
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{table}"
    );
    assert_eq!(table.matches("follower").count(), 2, "{table}");

    // Kill the leader by the pid `raftctl local` printed: the others serve.
    let old = local.leader();
    signal("-KILL", local.pid(old));
    let killed = Instant::now();
    assert_eq!(expect(base, &["set", "after", "kill"], 0).trim(), "OK");
    println!(
        "write acknowledged {:?} after the leader's SIGKILL",
        killed.elapsed()
    );
    assert_eq!(expect(base, &["get", "greeting"], 0), "hi");
    // One node down: status says unhealthy (exit 4) but still prints the rows.
    let down = ctl(base, &["status"]);
    assert_eq!(down.status.code(), Some(4));

    // Ctrl-C, then the same command on the same directory resumes the data.
    local.stop();
    let local = Local::start(dir.path(), base);
    assert_eq!(expect(base, &["get", "greeting"], 0), "hi");
    assert_eq!(expect(base, &["get", "after"], 0), "kill");
    assert_eq!(expect(base, &["incr", "visits"], 0).trim(), "3");
    local.stop();
}
