//! What an operator who runs etcd or Consul expects, through the
//! real binaries: fast clear failures and the documented exit codes, range
//! reads, a status that does not lie, decoded dumps, and a `raftctl local`
//! that notices when its nodes are not the ones answering.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::ctl::{Ctl, RAFTKV, raftctl};
use common::local::{Local, free_base_port, signal};
use common::ports::free_port;
use common::wait::{wait_exit, wait_for};

/// Client ports nobody listens on.
fn dead_endpoints() -> String {
    (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn connection_refused_everywhere_fails_in_about_a_second() {
    let ctl = Ctl::new().endpoints(&dead_endpoints());
    let started = Instant::now();
    let err = ctl.run(&["get", "k"]).fails(2, "unreachable");
    let took = started.elapsed();
    println!("refused everywhere: exit 2 after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
    // A write too (it would register a session first).
    let started = Instant::now();
    ctl.run(&["set", "k", "v"]).fails(2, "unreachable");
    assert!(started.elapsed() < Duration::from_secs(3));
    // --dial-timeout is the knob.
    let started = Instant::now();
    ctl.run(&["get", "k", "--dial-timeout", "2500ms"])
        .fails(2, "unreachable");
    assert!(started.elapsed() >= Duration::from_millis(2400));
}

#[test]
fn bad_values_exit_3_with_one_line_and_misuse_exits_128() {
    let ctl = Ctl::new().endpoints(&dead_endpoints());
    for (args, text) in [
        (&["expire", "k", "-5"][..], "must not be negative"),
        (&["expire", "k", "1.5"], "not a whole number"),
        (&["expire", "k", "+5"], "not a whole number"),
        (
            &["expire", "k", "9223372036854775807"],
            "above the limit of 9000000000 seconds",
        ),
        (&["get", "k", "-o", "xml"], "invalid value 'xml'"),
        (&["get", "k", "--endpoints", "nohost"], "is not HOST:PORT"),
        (&["get", "k", "--endpoints", "h:0"], "is not HOST:PORT"),
        (&["get", "k", "--timeout", "1500"], "has no unit"),
        (&["get", "k", "--timeout", "0s"], "above zero"),
    ] {
        let err = ctl.run(args).fails(3, text);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // RAFTKV_ENDPOINTS is checked like --endpoints.
    Ctl::new()
        .endpoints("127.0.0.1")
        .run(&["get", "k"])
        .fails(3, "is not HOST:PORT");
    for args in [&["frobnicate"][..], &["get", "k", "--frob"], &["get"]] {
        ctl.run(args).expect(128);
    }
    let help = ctl.run(&["--help"]).expect(0).stdout;
    assert!(help.contains("3    bad input"), "{help}");
}

#[test]
fn a_data_dir_that_is_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "not a directory").unwrap();
    let mut node = Cluster::plan("data-dir-is-a-file", 1, &[]);
    node.nodes[0].dir = file.clone();
    let file = file.to_str().unwrap();
    let out = node.command(0).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{file} is not a directory")), "{err}");
    let ctl = Ctl::new().endpoints("127.0.0.1:1");
    ctl.run(&["dump", file]).fails(3, "is not a directory");
    ctl.run(&["local", "--data-dir", file])
        .fails(3, "is not a directory");
}

/// Status rows as JSON.
fn status_json(ctl: &Ctl, code: i32) -> Vec<serde_json::Value> {
    let rows = ctl.run(&["status", "-o", "json"]).expect(code).json();
    rows.as_array().unwrap().clone()
}

fn leader_of(rows: &[serde_json::Value]) -> u64 {
    rows.iter()
        .find(|r| r["role"] == "leader")
        .and_then(|r| r["id"].as_u64())
        .expect("a leader")
}

#[test]
fn operator_walkthrough_on_a_local_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let log = dir.path().join("raftctl-local.stderr");
    let local = Local::start_logged(&dir.path().join("data"), base, Some(&log));
    let ctl = local.ctl();

    // The start hint works from the repository (the test runs there).
    assert!(
        local
            .banner
            .iter()
            .any(|l| l == "  target/release/raftctl set greeting hello"),
        "{:?}",
        local.banner
    );

    // Negative numbers are values; INCR reads canonical decimals only.
    assert_eq!(ctl.run(&["set", "n", "-5"]).expect(0).stdout.trim(), "OK");
    assert_eq!(ctl.run(&["get", "n"]).expect(0).stdout, "-5");
    assert_eq!(ctl.run(&["incr", "n"]).expect(0).stdout.trim(), "-4");
    for odd in ["007", "+5", "-0"] {
        ctl.run(&["set", "odd", odd]).expect(0);
        ctl.run(&["incr", "odd"])
            .fails(1, "not a canonical decimal");
        assert_eq!(ctl.run(&["get", "odd"]).expect(0).stdout, odd);
    }

    // Range reads: keys, get --prefix, a count, pages, JSON.
    for (k, v) in [
        ("user/b", "2"),
        ("user/a", "1"),
        ("users", "x"),
        ("other", "y"),
    ] {
        ctl.run(&["set", k, v]).expect(0);
    }
    let out = ctl.run(&["keys", "user/"]);
    assert_eq!(out.stdout, "user/a\nuser/b\n");
    assert_eq!(out.stderr.trim(), "2 keys");
    let out = ctl.run(&["keys", "user", "--limit", "2"]);
    assert_eq!(out.stdout, "user/a\nuser/b\n");
    assert_eq!(out.stderr.trim(), "3 keys (2 shown)");
    assert_eq!(
        ctl.run(&["get", "--prefix", "user/"]).expect(0).stdout,
        "user/a=1\nuser/b=2\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctl.run(&["keys", "-o", "json"]).expect(0).stdout).unwrap();
    assert_eq!(json["count"], 6, "{json}");
    assert_eq!(json["items"][0]["key"], "n");
    // An expired key is hidden at once, by cluster time.
    ctl.run(&["set", "tmp/x", "1"]).expect(0);
    ctl.run(&["expire", "tmp/x", "1"]).expect(0);
    assert_eq!(ctl.run(&["keys", "tmp/"]).expect(0).stdout, "tmp/x\n");
    wait_for("tmp/x to expire", Duration::from_secs(10), || {
        ctl.run(&["keys", "tmp/"])
            .expect(0)
            .stdout
            .is_empty()
            .then_some(())
    });

    // Status: every member, found from one endpoint, with the process
    // behind each; the pids are the ones raftctl local started.
    let first = Ctl::new().endpoints(&format!("127.0.0.1:{base}"));
    let rows = status_json(&first, 0);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let cluster = rows[0]["cluster_id"].as_str().unwrap().to_string();
    for r in &rows {
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["pid"].as_u64(), Some(u64::from(local.pid(id))), "{r}");
        assert_eq!(r["cluster_id"], cluster.as_str());
        assert_eq!(r["membership"], "voter");
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
        assert!(r["last_index"].as_u64().unwrap() > 0);
    }
    let table = first.run(&["status"]).expect(0).stdout;
    assert!(
        table.starts_with(&format!("cluster {cluster}: leader node ")),
        "{table}"
    );
    assert!(table.contains("VERSION  PID"), "{table}");

    // transfer-leader to the leader says it already leads.
    let leader = leader_of(&rows);
    let said = ctl
        .run(&["transfer-leader", &leader.to_string()])
        .expect(0)
        .stdout;
    assert_eq!(
        said.trim(),
        format!("node {leader} already leads; nothing to transfer")
    );

    // --watch without a terminal prints a table per round until Ctrl-C.
    let watch = ctl
        .command(&["status", "--watch", "--interval", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal("-INT", watch.id());
    let watched = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&watched.stdout);
    assert_eq!(watched.status.code(), Some(0), "{text}");
    assert!(text.matches("--- ").count() >= 2, "{text}");
    assert!(text.contains("healthy"), "{text}");
    assert!(!text.contains('\x1b'), "no escape codes in a pipe: {text}");

    // check: every member's state hash at one log index, all equal; JSON
    // names the index and each member's hash.
    let table = ctl.run(&["check"]).expect(0).stdout;
    assert_eq!(table.lines().count(), 4, "a header and 3 members: {table}");
    let json: serde_json::Value =
        serde_json::from_str(&ctl.run(&["check", "-o", "json"]).expect(0).stdout).unwrap();
    assert_eq!(json["verdict"], "equal", "{json}");
    let hashes: Vec<&str> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 3, "{json}");
    assert!(
        hashes.iter().all(|h| *h == hashes[0] && h.len() == 16),
        "{json}"
    );
    assert!(json["index"].as_u64().unwrap() > 0);

    // dump refuses a live data directory.
    let node0 = dir.path().join("data/node-0");
    let node0 = node0.to_str().unwrap();
    ctl.run(&["dump", node0]).fails(1, "--force");

    // A member that does not answer makes status exit 4 (like `etcdctl
    // endpoint health`), so `raftctl status && deploy` is a valid script.
    let victim = (0..3).find(|&i| i != leader).unwrap();
    let other = (0..3).find(|&i| i != leader && i != victim).unwrap();
    signal("-STOP", local.pid(other));
    let err = ctl
        .run(&["status"])
        .fails(4, "unhealthy: 1 of 3 members unreachable");
    // A member that cannot be compared is not a pass either.
    ctl.run(&["check", "--wait", "2s"])
        .fails(4, "not every member could be compared");
    signal("-CONT", local.pid(other));
    assert_eq!(
        err.lines().count(),
        2,
        "the down node's error and the verdict: {err}"
    );
    wait_for("a healthy cluster again", Duration::from_secs(10), || {
        ctl.run(&["status"]).success().then_some(())
    });
    // A removed node shows as removed and does not count.
    ctl.run(&["member", "remove", &victim.to_string()])
        .expect(0);
    let rows = status_json(&ctl, 0);
    let removed = rows.iter().find(|r| r["id"] == victim).unwrap();
    assert_eq!(removed["role"], "removed", "{rows:?}");
    assert_eq!(removed["membership"], "removed", "{rows:?}");

    // Node logs written to files carry no colour codes.
    let node_log = std::fs::read_to_string(dir.path().join("data/node-0.log")).unwrap();
    assert!(node_log.contains("node started"), "{node_log}");
    assert!(!node_log.contains('\x1b'), "escape codes in the node log");

    // Ctrl-C: a final line once every node has stopped.
    local.stop();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("all 3 nodes have stopped"), "{said}");

    // The dump decodes the commands (one raftctl write = REGISTER + the write).
    let dump = ctl.run(&["dump", node0]).expect(0).stdout;
    assert!(dump.contains("STATE-CHECK"), "{dump}");
    assert!(dump.contains("STATE-REPORT node"), "{dump}");
    assert!(dump.contains(r#"SET "n" = "-5""#), "{dump}");
    assert!(dump.contains(r#"INCR "n""#), "{dump}");
    assert!(dump.contains("REGISTER (opens a client session)"), "{dump}");
    let json: serde_json::Value =
        serde_json::from_str(&ctl.run(&["dump", node0, "-o", "json"]).expect(0).stdout).unwrap();
    let entries = json["entries"].as_array().unwrap();
    assert!(entries.iter().any(|x| x["type"] == "config"), "{json}");
    assert!(
        entries
            .iter()
            .any(|x| x["command"] == r#"SET "user/a" = "1""#),
        "{json}"
    );
    let yaml = ctl.run(&["dump", node0, "-o", "yaml"]).expect(0).stdout;
    assert!(yaml.contains("cluster_id:"), "{yaml}");
}

#[test]
fn local_refuses_taken_ports_and_exits_when_every_node_died() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let log = dir.path().join("raftctl-local.stderr");
    let mut local = Local::start_logged(&dir.path().join("a"), base, Some(&log));

    // A second local cluster on the same ports fails fast, naming the port.
    let started = Instant::now();
    raftctl(&[
        "local",
        "--data-dir",
        dir.path().join("b").to_str().unwrap(),
        "--base-port",
        &base.to_string(),
    ])
    .fails(
        1,
        &format!("port conflict: 127.0.0.1:{base} (node 0 client port)"),
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // SIGHUP restarts a dead node and says its new pid.
    let old = local.pid(1);
    signal("-KILL", old);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("node 1 to be seen dead", Duration::from_secs(10), || {
        said().contains("node 1 exited").then_some(())
    });
    signal("-HUP", local.child.id());
    wait_for("node 1 restarted", Duration::from_secs(10), || {
        said().contains("node 1 restarted: pid ").then_some(())
    });
    let text = said();
    let line = text
        .lines()
        .find(|l| l.starts_with("node 1 restarted: pid "))
        .unwrap();
    let new: u32 = line["node 1 restarted: pid ".len()..].parse().unwrap();
    assert_ne!(new, old);

    // Every node dead: raftctl local exits non-zero, saying so.
    let pids: Vec<u32> = (0..3)
        .map(|i| if i == 1 { new } else { local.pid(i) })
        .collect();
    for pid in pids {
        signal("-KILL", pid);
    }
    let status = local.wait_exit(
        "raftctl local to exit once every node died",
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        said().contains("every node of the local cluster has exited"),
        "{}",
        said()
    );
}

/// Cluster id of the cluster `ctl` runs against.
fn cluster_id(ctl: &Ctl) -> String {
    let rows = status_json(ctl, 0);
    rows[0]["cluster_id"].as_str().unwrap().to_string()
}

#[test]
fn a_node_on_another_clusters_data_directory_exits_naming_both_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (base_a, base_b) = (free_base_port(), free_base_port());
    let a = Local::start(&dir.path().join("a"), base_a);
    let b = Local::start(&dir.path().join("b"), base_b);
    let (id_a, id_b) = (cluster_id(&a.ctl()), cluster_id(&b.ctl()));
    assert_ne!(id_a, id_b);
    b.stop();

    // Node 0 of cluster B, started among cluster A's nodes 1 and 2.
    let port = |base: u16, i: u16, k: u16| format!("127.0.0.1:{}", base + 10 * i + k);
    let peers = format!(
        "0={},1={},2={}",
        port(base_b, 0, 1),
        port(base_a, 1, 1),
        port(base_a, 2, 1)
    );
    let data = dir.path().join("b/node-0");
    let started = Instant::now();
    let mut node = Command::new(RAFTKV)
        .args(["--id", "0", "--data-dir", data.to_str().unwrap()])
        .args(["--client-addr", &port(base_b, 0, 0)])
        .args(["--peer-addr", &port(base_b, 0, 1)])
        .args(["--http-addr", &port(base_b, 0, 2)])
        .args(["--peers", &peers])
        .env_remove("RAFTKV_CLUSTER_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(
        &mut node,
        "the node of cluster B to exit among cluster A",
        Duration::from_secs(15),
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut node.stderr.take().unwrap(), &mut err).unwrap();
    println!("mismatch detected after {:?}", started.elapsed());
    assert_eq!(status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("raftkv: cluster id mismatch"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&id_a) && line.contains(&id_b), "{line}");
    a.stop();
}
