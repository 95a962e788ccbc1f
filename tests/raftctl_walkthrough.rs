//! The README walkthrough as a test: `raftctl local` starts a 3-node cluster,
//! raftctl sets, gets, counts, compares-and-swaps, expires and deletes keys,
//! shows status, survives a leader SIGKILL, and a restarted `raftctl local`
//! on the same data directory finds every key. Exit codes and stderr follow
//! docs/raftctl.md.

mod common;

use std::time::Instant;

use common::local::{Local, free_base_port, signal};

#[test]
fn readme_walkthrough_with_raftctl_local() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let local = Local::start(dir.path(), base);
    let ctl = local.ctl();

    assert_eq!(
        ctl.run(&["set", "greeting", "hello"])
            .expect(0)
            .stdout
            .trim(),
        "OK"
    );
    assert_eq!(ctl.run(&["get", "greeting"]).expect(0).stdout, "hello");
    assert_eq!(ctl.run(&["incr", "visits"]).expect(0).stdout.trim(), "1");
    assert_eq!(ctl.run(&["incr", "visits"]).expect(0).stdout.trim(), "2");
    // A missing key: nothing on stdout, a note on stderr, exit 1.
    let out = ctl.run(&["get", "nope"]).expect(1);
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
    // CAS: a wrong expectation changes nothing.
    ctl.run(&["cas", "greeting", "bye", "x"]).expect(1);
    ctl.run(&["cas", "greeting", "hello", "hi"]).expect(0);
    assert_eq!(ctl.run(&["get", "greeting"]).expect(0).stdout, "hi");
    // INCR on text is refused (exit 1), an empty key is bad input (exit 3);
    // neither changes anything.
    ctl.run(&["incr", "greeting"]).expect(1);
    ctl.run(&["set", "", "v"]).expect(3);
    assert_eq!(ctl.run(&["get", "greeting"]).expect(0).stdout, "hi");
    // Expiry and TTL; DEL.
    ctl.run(&["set", "temp", "t"]).expect(0);
    ctl.run(&["expire", "temp", "100"]).expect(0);
    let ttl: f64 = ctl
        .run(&["ttl", "temp"])
        .expect(0)
        .stdout
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 90.0 && ttl <= 100.0, "ttl {ttl}");
    ctl.run(&["del", "temp"]).expect(0);
    ctl.run(&["get", "temp"]).expect(1);

    let table = ctl.run(&["status"]).expect(0).stdout;
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
    assert_eq!(
        ctl.run(&["set", "after", "kill"]).expect(0).stdout.trim(),
        "OK"
    );
    println!(
        "write acknowledged {:?} after the leader's SIGKILL",
        killed.elapsed()
    );
    assert_eq!(ctl.run(&["get", "greeting"]).expect(0).stdout, "hi");
    // One node down: status says unhealthy (exit 4) but still prints the rows.
    ctl.run(&["status"]).expect(4);

    // Ctrl-C, then the same command on the same directory resumes the data.
    local.stop();
    let local = Local::start(dir.path(), base);
    assert_eq!(ctl.run(&["get", "greeting"]).expect(0).stdout, "hi");
    assert_eq!(ctl.run(&["get", "after"]).expect(0).stdout, "kill");
    assert_eq!(ctl.run(&["incr", "visits"]).expect(0).stdout.trim(), "3");
    local.stop();
}
