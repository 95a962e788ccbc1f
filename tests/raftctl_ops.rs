//! What an operator who runs etcd or Consul expects, through the
//! real binaries: fast clear failures and the documented exit codes, range
//! reads, a status that does not lie, decoded dumps, and a `raftctl local`
//! that notices when its nodes are not the ones answering.

#[path = "common/local.rs"]
mod local;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use local::{Local, RAFTCTL, free_base_port, signal};

const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");

/// Runs raftctl with `endpoints` (comma separated).
fn ctl(endpoints: &str, args: &[&str]) -> Output {
    Command::new(RAFTCTL)
        .args(args)
        .env("RAFTKV_ENDPOINTS", endpoints)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// raftctl's stdout, asserting exit code `code`.
fn expect(endpoints: &str, args: &[&str], code: i32) -> String {
    let out = ctl(endpoints, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "raftctl {args:?}: stdout {:?} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// raftctl's stderr, asserting exit code `code` and that it mentions `text`
/// on one line.
fn expect_err(endpoints: &str, args: &[&str], code: i32, text: &str) -> String {
    let out = ctl(endpoints, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "raftctl {args:?}: {err}");
    assert!(
        err.contains(text),
        "raftctl {args:?}: {err:?} lacks {text:?}"
    );
    err
}

/// Client ports nobody listens on.
fn dead_endpoints() -> String {
    (0..3)
        .map(|_| format!("127.0.0.1:{}", local::ports::free_port()))
        .collect::<Vec<_>>()
        .join(",")
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn connection_refused_everywhere_fails_in_about_a_second() {
    let endpoints = dead_endpoints();
    let started = Instant::now();
    let err = expect_err(&endpoints, &["get", "k"], 2, "unreachable");
    let took = started.elapsed();
    println!("refused everywhere: exit 2 after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
    // A write too (it would register a session first).
    let started = Instant::now();
    expect_err(&endpoints, &["set", "k", "v"], 2, "unreachable");
    assert!(started.elapsed() < Duration::from_secs(3));
    // --dial-timeout is the knob.
    let started = Instant::now();
    expect_err(
        &endpoints,
        &["get", "k", "--dial-timeout", "2500ms"],
        2,
        "unreachable",
    );
    assert!(started.elapsed() >= Duration::from_millis(2400));
}

#[test]
fn bad_values_exit_3_with_one_line_and_misuse_exits_128() {
    let e = dead_endpoints();
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
        let err = expect_err(&e, args, 3, text);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // RAFTKV_ENDPOINTS is checked like --endpoints.
    expect_err("127.0.0.1", &["get", "k"], 3, "is not HOST:PORT");
    for args in [&["frobnicate"][..], &["get", "k", "--frob"], &["get"]] {
        let out = ctl(&e, args);
        assert_eq!(out.status.code(), Some(128), "{args:?}: {}", stderr(&out));
    }
    let help = expect(&e, &["--help"], 0);
    assert!(help.contains("3    bad input"), "{help}");
}

#[test]
fn a_data_dir_that_is_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "not a directory").unwrap();
    let file = file.to_str().unwrap();
    let ports: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", local::ports::free_port()))
        .collect();
    let out = Command::new(RAFTKV)
        .args(["--id", "0", "--data-dir", file])
        .args(["--client-addr", &ports[0], "--peer-addr", &ports[1]])
        .args([
            "--http-addr",
            &ports[2],
            "--peers",
            &format!("0={}", ports[1]),
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{file} is not a directory")), "{err}");
    expect_err("127.0.0.1:1", &["dump", file], 3, "is not a directory");
    expect_err(
        "127.0.0.1:1",
        &["local", "--data-dir", file],
        3,
        "is not a directory",
    );
}

/// Status rows as JSON.
fn status_json(endpoints: &str, code: i32) -> Vec<serde_json::Value> {
    let text = expect(endpoints, &["status", "-o", "json"], code);
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
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
    let all = Local::endpoints(base);
    let e = all.as_str();

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
    assert_eq!(expect(e, &["set", "n", "-5"], 0).trim(), "OK");
    assert_eq!(expect(e, &["get", "n"], 0), "-5");
    assert_eq!(expect(e, &["incr", "n"], 0).trim(), "-4");
    for odd in ["007", "+5", "-0"] {
        expect(e, &["set", "odd", odd], 0);
        expect_err(e, &["incr", "odd"], 1, "not a canonical decimal");
        assert_eq!(expect(e, &["get", "odd"], 0), odd);
    }

    // Range reads: keys, get --prefix, a count, pages, JSON.
    for (k, v) in [
        ("user/b", "2"),
        ("user/a", "1"),
        ("users", "x"),
        ("other", "y"),
    ] {
        expect(e, &["set", k, v], 0);
    }
    let out = ctl(e, &["keys", "user/"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "user/a\nuser/b\n");
    assert_eq!(stderr(&out).trim(), "2 keys");
    let out = ctl(e, &["keys", "user", "--limit", "2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "user/a\nuser/b\n");
    assert_eq!(stderr(&out).trim(), "3 keys (2 shown)");
    assert_eq!(
        expect(e, &["get", "--prefix", "user/"], 0),
        "user/a=1\nuser/b=2\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&expect(e, &["keys", "-o", "json"], 0)).unwrap();
    assert_eq!(json["count"], 6, "{json}");
    assert_eq!(json["items"][0]["key"], "n");
    // An expired key is hidden at once, by cluster time.
    expect(e, &["set", "tmp/x", "1"], 0);
    expect(e, &["expire", "tmp/x", "1"], 0);
    assert_eq!(expect(e, &["keys", "tmp/"], 0), "tmp/x\n");
    wait_for(Duration::from_secs(10), "tmp/x to expire", || {
        expect(e, &["keys", "tmp/"], 0).is_empty()
    });

    // Status: every member, found from one endpoint, with the process
    // behind each; the pids are the ones raftctl local started.
    let first = format!("127.0.0.1:{base}");
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
    let table = expect(&first, &["status"], 0);
    assert!(
        table.starts_with(&format!("cluster {cluster}: leader node ")),
        "{table}"
    );
    assert!(table.contains("VERSION  PID"), "{table}");

    // transfer-leader to the leader says it already leads.
    let leader = leader_of(&rows);
    let said = expect(e, &["transfer-leader", &leader.to_string()], 0);
    assert_eq!(
        said.trim(),
        format!("node {leader} already leads; nothing to transfer")
    );

    // --watch without a terminal prints a table per round until Ctrl-C.
    let watch = Command::new(RAFTCTL)
        .args(["status", "--watch", "--interval", "300ms"])
        .env("RAFTKV_ENDPOINTS", e)
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

    // dump refuses a live data directory.
    let node0 = dir.path().join("data/node-0");
    let node0 = node0.to_str().unwrap();
    expect_err(e, &["dump", node0], 1, "--force");

    // A member that does not answer makes status exit 4 (like `etcdctl
    // endpoint health`), so `raftctl status && deploy` is a valid script.
    let victim = (0..3).find(|&i| i != leader).unwrap();
    let other = (0..3).find(|&i| i != leader && i != victim).unwrap();
    signal("-STOP", local.pid(other));
    let err = expect_err(e, &["status"], 4, "unhealthy: 1 of 3 members unreachable");
    signal("-CONT", local.pid(other));
    assert_eq!(
        err.lines().count(),
        2,
        "the down node's error and the verdict: {err}"
    );
    wait_for(Duration::from_secs(10), "a healthy cluster again", || {
        ctl(e, &["status"]).status.code() == Some(0)
    });
    // A removed node shows as removed and does not count.
    expect(e, &["member", "remove", &victim.to_string()], 0);
    let rows = status_json(e, 0);
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
    let dump = expect(e, &["dump", node0], 0);
    assert!(dump.contains(r#"SET "n" = "-5""#), "{dump}");
    assert!(dump.contains(r#"INCR "n""#), "{dump}");
    assert!(dump.contains("REGISTER (opens a client session)"), "{dump}");
    let json: serde_json::Value =
        serde_json::from_str(&expect(e, &["dump", node0, "-o", "json"], 0)).unwrap();
    let entries = json["entries"].as_array().unwrap();
    assert!(entries.iter().any(|x| x["type"] == "config"), "{json}");
    assert!(
        entries
            .iter()
            .any(|x| x["command"] == r#"SET "user/a" = "1""#),
        "{json}"
    );
    let yaml = expect(e, &["dump", node0, "-o", "yaml"], 0);
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
    let out = Command::new(RAFTCTL)
        .args([
            "local",
            "--data-dir",
            dir.path().join("b").to_str().unwrap(),
        ])
        .args(["--base-port", &base.to_string()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "port conflict: 127.0.0.1:{base} (node 0 client port)"
        )),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // SIGHUP restarts a dead node and says its new pid.
    let old = local.pid(1);
    signal("-KILL", old);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(Duration::from_secs(10), "node 1 to be seen dead", || {
        said().contains("node 1 exited")
    });
    signal("-HUP", local.child.id());
    wait_for(Duration::from_secs(10), "node 1 restarted", || {
        said().contains("node 1 restarted: pid ")
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
    let status = local
        .wait_exit(Duration::from_secs(10))
        .expect("raftctl local exits once every node died");
    assert_eq!(status.code(), Some(1));
    assert!(
        said().contains("every node of the local cluster has exited"),
        "{}",
        said()
    );
}

/// Cluster id of the cluster at `endpoints`.
fn cluster_id(endpoints: &str) -> String {
    let rows = status_json(endpoints, 0);
    rows[0]["cluster_id"].as_str().unwrap().to_string()
}

#[test]
fn a_node_on_another_clusters_data_directory_exits_naming_both_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (base_a, base_b) = (free_base_port(), free_base_port());
    let a = Local::start(&dir.path().join("a"), base_a);
    let b = Local::start(&dir.path().join("b"), base_b);
    let (id_a, id_b) = (
        cluster_id(&Local::endpoints(base_a)),
        cluster_id(&Local::endpoints(base_b)),
    );
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
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            panic!("the node of cluster B kept running among cluster A");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
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
