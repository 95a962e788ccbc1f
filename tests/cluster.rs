//! Process tests: real `raftkv` binaries on loopback, killed, paused and
//! restarted. Each test picks its own free ports so tests run in parallel,
//! polls for conditions with deadlines, and kills its processes on drop.
//! Node logs go to the test's temporary directory (`node<i>.log`), kept
//! (and its path printed) when the test fails.

use raftkv::client::{Client, ClientOptions};
use raftkv::pb;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_raftkv");
const CTL: &str = env!("CARGO_BIN_EXE_raftctl");

/// A port nobody listens on now (the OS picks it; a tiny race is accepted).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    id: usize,
    dir: PathBuf,
    client: String,
    peer: String,
    http: String,
    child: Option<Child>,
}

struct Cluster {
    name: String,
    nodes: Vec<Node>,
    /// Flags added to every node's command line.
    extra: Vec<String>,
    /// Nodes 0..founders form the initial cluster (`--peers`); a later node
    /// lists the founders and itself, and joins at run time.
    founders: usize,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with fresh data directories.
    fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_with(name, n, &[])
    }

    /// Starts `n` nodes with `extra` flags each.
    fn start_with(name: &str, n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster::plan(name, n, extra);
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    /// `n` nodes with fresh data directories and `extra` flags each, none
    /// started yet.
    fn plan(name: &str, n: usize, extra: &[&str]) -> Cluster {
        let dirs = tempfile::tempdir().unwrap();
        let nodes = (0..n)
            .map(|id| Node {
                id,
                dir: dirs.path().join(format!("node{id}")),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let c = Cluster {
            name: name.to_string(),
            nodes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            founders: n,
            _dirs: dirs,
        };
        // Logs are appended across a test's restarts; a new test run starts
        // them afresh so no line from an earlier run can satisfy a check.
        for i in 0..n {
            let _ = std::fs::remove_file(c.log_path(i));
        }
        c
    }

    /// The nodes node `i` is configured with: the founders, and itself.
    fn known_to(&self, i: usize) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(move |n| n.id < self.founders || n.id == i)
    }

    fn peers_arg(&self, i: usize) -> String {
        let v: Vec<String> = self
            .known_to(i)
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect();
        v.join(",")
    }

    fn client_addrs_arg(&self, i: usize) -> String {
        let v: Vec<String> = self
            .known_to(i)
            .map(|n| format!("{}={}", n.id, n.client))
            .collect();
        v.join(",")
    }

    fn command(&self, i: usize) -> Command {
        let n = &self.nodes[i];
        let mut cmd = Command::new(BIN);
        cmd.args(["--id", &n.id.to_string()])
            .args(["--data-dir", n.dir.to_str().unwrap()])
            .args([
                "--client-addr",
                &n.client,
                "--peer-addr",
                &n.peer,
                "--http-addr",
                &n.http,
            ])
            .args([
                "--peers",
                &self.peers_arg(i),
                "--peer-client-addrs",
                &self.client_addrs_arg(i),
            ])
            .args(["--log-level", "info,raftkv=debug"])
            .args(&self.extra)
            .env_remove("RAFTKV_CLUSTER_ID");
        cmd
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self._dirs.path().join(format!("node{i}.log"))
    }

    fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    /// Starts node `i` with `flags` added to its command line.
    fn spawn_with(&mut self, i: usize, flags: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let child = self
            .command(i)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("running").id()
    }

    fn signal(&self, i: usize, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid(i).to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} failed");
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status (within `limit`).
    fn terminate(&mut self, i: usize, limit: Duration) -> ExitStatus {
        self.signal(i, "-TERM");
        self.wait_exit(i, limit)
    }

    /// The exit status of node `i`, which must exit within `limit`.
    fn wait_exit(&mut self, i: usize, limit: Duration) -> ExitStatus {
        let mut child = self.nodes[i].child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {i} did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether node `i`'s process is still running.
    fn running(&mut self, i: usize) -> bool {
        let child = self.nodes[i].child.as_mut().expect("spawned");
        child.try_wait().unwrap().is_none()
    }

    /// Runs `raftctl` against every node's client address; (success, stdout + stderr).
    fn raftctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(CTL)
            .args(["--endpoints", &self.endpoints().join(",")])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client.clone()).collect()
    }

    async fn client(&self) -> Client {
        let opts = ClientOptions {
            attempt_timeout: Duration::from_millis(700),
            connect_timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        }
        .with_timeout(Duration::from_secs(15));
        Client::connect(self.endpoints(), opts)
            .await
            .expect("cluster reachable")
    }

    /// Polls until one of `among` reports itself leader with a majority
    /// agreeing on it; returns its index.
    async fn leader(&self, among: &[usize], limit: Duration) -> usize {
        let probe = Client::lazy(
            self.endpoints(),
            ClientOptions::default().with_timeout(Duration::from_millis(500)),
        )
        .unwrap();
        let deadline = Instant::now() + limit;
        loop {
            for &i in among {
                if let Ok(s) = probe.status(&self.nodes[i].client).await {
                    if s.role == "leader" {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Hands leadership to node `i`. The call answers once node `i` leads;
    /// a transfer that fails (its TimeoutNow can be lost, e.g. to a peer
    /// stream still reconnecting after a restart) is asked for again.
    async fn transfer_to(&self, client: &Client, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.transfer_leader(i as u64).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "node {i} never took over: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.leader(&[i], Duration::from_secs(5)).await, i);
    }

    /// Waits until node `i` has applied `applied` and holds a snapshot at or
    /// past `snapshot`.
    async fn wait_caught_up(&self, i: usize, applied: u64, snapshot: u64, what: &str) {
        wait_for(what, Duration::from_secs(10), || async move {
            self.status(i)
                .await
                .is_some_and(|s| s.applied_index >= applied && s.snapshot_index >= snapshot)
        })
        .await;
    }

    async fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        let probe = Client::lazy(
            self.endpoints(),
            ClientOptions::default().with_timeout(Duration::from_millis(500)),
        )
        .unwrap();
        probe.status(&self.nodes[i].client).await.ok()
    }

    /// A raw Kv client pinned to node `i` (no redirects, no retries).
    async fn raw(&self, i: usize) -> pb::kv_client::KvClient<tonic::transport::Channel> {
        pb::kv_client::KvClient::connect(format!("http://{}", self.nodes[i].client))
            .await
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(c) = &self.nodes[i].child {
                // A paused process must be resumed to die cleanly.
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
            }
            self.kill(i);
        }
        if std::thread::panicking() {
            self._dirs.disable_cleanup(true);
            eprintln!(
                "{}: node logs kept in {}",
                self.name,
                self._dirs.path().display()
            );
        }
    }
}

/// A plain HTTP/1.1 GET: (status code, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_acknowledged_writes_and_restarted_node_catches_up() {
    // A small snapshot threshold: while the old leader is down the others
    // compact past its log, so it catches up from an installed snapshot.
    let mut c = Cluster::start_with("failover", 3, &["--snapshot-threshold", "40"]);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    client.set(b"hello", b"world").await.unwrap();
    assert_eq!(
        client.get(b"hello").await.unwrap().as_deref(),
        Some(&b"world"[..])
    );

    // Probes and metrics: every node live and, with a leader known, ready.
    for i in 0..3 {
        let http = c.nodes[i].http.clone();
        assert_eq!(http_get(&http, "/livez").unwrap().0, 200);
        wait_for("/readyz to answer 200", Duration::from_secs(5), || {
            let http = http.clone();
            async move { http_get(&http, "/readyz").is_ok_and(|(code, _)| code == 200) }
        })
        .await;
    }
    let (code, metrics) = http_get(&c.nodes[leader].http, "/metrics").unwrap();
    assert_eq!(code, 200);
    for line in [
        "raftkv_is_leader 1",
        "raftkv_has_leader 1",
        "raftkv_lease_valid 1",
        "process_cpu_seconds_total",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line:?}");
    }
    assert!(metrics.contains("raftkv_grpc_request_duration_seconds_count{method=\"Write\"}"));

    let mut acked = Vec::new();
    for i in 0..50 {
        let k = format!("k{i}");
        client.set(k.as_bytes(), b"v").await.unwrap();
        acked.push(k);
    }
    c.kill(leader);
    let killed_at = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // The gap: from the kill until a write is acknowledged by the new leader.
    client.set(b"after", b"failover").await.unwrap();
    let gap = killed_at.elapsed();
    println!("failover gap (SIGKILL leader -> next acknowledged write): {gap:?}");
    assert!(gap < Duration::from_secs(5), "failover took {gap:?}");
    let new_leader = c.leader(&others, Duration::from_secs(5)).await;
    assert_ne!(new_leader, leader);
    for k in &acked {
        assert_eq!(
            client.get(k.as_bytes()).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "lost {k}"
        );
    }

    for i in 0..100 {
        let k = format!("later{i}");
        client.set(k.as_bytes(), b"w").await.unwrap();
        acked.push(k);
    }
    let snap = c.status(new_leader).await.unwrap().snapshot_index;
    assert!(
        snap > 50,
        "the leader has not compacted (snapshot index {snap})"
    );
    c.spawn(leader);
    let target = c.status(new_leader).await.unwrap().commit_index;
    c.wait_caught_up(leader, target, 0, "the restarted node to catch up")
        .await;
    // It caught up through an installed snapshot; a crash right after must
    // recover that snapshot from its own disk, not ask for it again.
    let installed = c.status(leader).await.unwrap().snapshot_index;
    assert!(installed > 50, "caught up without a snapshot ({installed})");
    c.kill(leader);
    c.spawn(leader);
    c.wait_caught_up(
        leader,
        target,
        installed,
        "the node to restart from its snapshot",
    )
    .await;
    // Hand leadership to the restarted node: it serves every acknowledged write.
    c.transfer_to(&client, leader).await;
    for k in &acked {
        assert!(
            client.get(k.as_bytes()).await.unwrap().is_some(),
            "restarted node lacks {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_serves_no_stale_read_after_resuming() {
    let c = Cluster::start("pause", 3);
    let old = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    client.set(b"x", b"1").await.unwrap();

    c.signal(old, "-STOP");
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // Past its lease (250 ms) and an election.
    let new = c.leader(&others, Duration::from_secs(10)).await;
    let mut raw_new = c.raw(new).await;
    let set = pb::WriteRequest {
        session: None,
        command: Some(pb::Command {
            op: Some(pb::command::Op::Set(pb::SetCmd {
                key: "x".into(),
                value: "2".into(),
            })),
        }),
    };
    raw_new
        .write(set)
        .await
        .expect("new leader acknowledges the write");

    let mut raw_old = c.raw(old).await;
    c.signal(old, "-CONT");
    // Every GET that began after the acknowledged SET returns it or fails.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut answered = 0;
    while Instant::now() < deadline {
        match raw_old.get(pb::GetRequest { key: "x".into() }).await {
            Ok(r) => {
                let r = r.into_inner();
                assert_eq!(&r.value[..], b"2", "stale read from the resumed old leader");
                answered += 1;
            }
            Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("old leader answered {answered} GETs after resuming, none stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_data_and_sigterm_exits_cleanly() {
    let mut c = Cluster::start("restart", 3);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    for i in 0..20 {
        client
            .set(format!("key{i}").as_bytes(), format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(client.incr(b"counter").await.unwrap(), 1);
    for i in 0..3 {
        let started = Instant::now();
        let status = c.terminate(i, Duration::from_secs(6));
        assert!(status.success(), "node {i} exited with {status}");
        println!("node {i} stopped on SIGTERM in {:?}", started.elapsed());
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    for i in 0..20 {
        let v = client.get(format!("key{i}").as_bytes()).await.unwrap();
        assert_eq!(v.as_deref(), Some(format!("{i}").as_bytes()));
    }
    assert_eq!(client.incr(b"counter").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let c = Cluster::start("badinput", 3);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    client.set(b"text", b"abc").await.unwrap();

    let e = client.incr(b"text").await.unwrap_err();
    assert_eq!(
        e.rejection_code(),
        Some(pb::kv_error::Code::NotAnInteger),
        "{e}"
    );
    assert_eq!(
        client.get(b"text").await.unwrap().as_deref(),
        Some(&b"abc"[..])
    );

    // Past the client's own checks: the server refuses too.
    let mut raw = c.raw(leader).await;
    let big = vec![b'k'; 5000];
    let w = raw
        .write(pb::WriteRequest {
            session: None,
            command: Some(pb::Command {
                op: Some(pb::command::Op::Set(pb::SetCmd {
                    key: big.clone().into(),
                    value: "v".into(),
                })),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    match w.result {
        Some(pb::write_response::Result::Error(e)) => {
            assert_eq!(e.code(), pb::kv_error::Code::KeyTooLarge);
            assert!(!e.message.is_empty());
        }
        other => panic!("oversize key accepted: {other:?}"),
    }
    let g = raw
        .get(pb::GetRequest { key: big.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!g.found);
    let e = raw
        .write(pb::WriteRequest {
            session: None,
            command: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_nodes_refuse_to_start() {
    let c = Cluster {
        name: "misconfig".into(),
        nodes: Vec::new(),
        extra: Vec::new(),
        founders: 0,
        _dirs: tempfile::tempdir().unwrap(),
    };
    let dir = c._dirs.path().join("n0");
    let port = free_port();
    let peers = format!("0=127.0.0.1:{port}");
    let run = |extra: &[&str]| {
        let client = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--client-addr",
            &client,
        ])
        .args(["--http-addr", &http, "--peer-addr", &peer])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RAFTKV_CLUSTER_ID");
        cmd
    };
    // Own id missing from the peer list.
    let out = run(&["--id", "3", "--peers", &peers]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("own id 3 is not in the peer list"), "{err}");

    // A data directory of cluster "alpha", then opened as cluster "beta" and as another node.
    let mut first = run(&["--id", "0", "--peers", &peers, "--cluster-id", "alpha"])
        .spawn()
        .unwrap();
    let identity = dir.join("identity");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !identity.exists() {
        assert!(
            Instant::now() < deadline,
            "no identity written in {}",
            dir.display()
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "single node exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = first.kill();
    let _ = first.wait();
    let out = run(&["--id", "0", "--peers", &peers, "--cluster-id", "beta"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to cluster \"alpha\""), "{err}");
    let peers1 = format!("1=127.0.0.1:{port}");
    let out = run(&["--id", "1", "--peers", &peers1]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to node 0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_never_depends_on_quorum_but_readyz_does() {
    let mut c = Cluster::start("probes", 3);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    c.kill(1);
    c.kill(2);
    let http = c.nodes[0].http.clone();
    wait_for(
        "/readyz to fail without a quorum",
        Duration::from_secs(10),
        || {
            let http = http.clone();
            async move { http_get(&http, "/readyz").is_ok_and(|(code, _)| code == 503) }
        },
    )
    .await;
    let (_, reason) = http_get(&http, "/readyz").unwrap();
    assert!(reason.contains("no leader"), "{reason}");
    assert_eq!(http_get(&http, "/livez").unwrap().0, 200);
}

/// Writes `n` keys `prefix{i}` = `v{i}` and returns them, all acknowledged.
async fn write_keys(client: &Client, prefix: &str, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let k = format!("{prefix}{i}");
        client
            .set(k.as_bytes(), format!("v{i}").as_bytes())
            .await
            .unwrap();
        keys.push(k);
    }
    keys
}

async fn assert_all_present(client: &Client, keys: &[String], when: &str) {
    for k in keys {
        let i = k.trim_start_matches(|c: char| !c.is_ascii_digit());
        assert_eq!(
            client.get(k.as_bytes()).await.unwrap().as_deref(),
            Some(format!("v{i}").as_bytes()),
            "{when}: lost {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_member_refuses_to_bootstrap_and_rejoins_through_the_documented_recovery() {
    // A small snapshot threshold: the rejoining node catches up from a snapshot.
    let mut c = Cluster::start_with("wiped", 3, &["--snapshot-threshold", "40"]);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    let mut acked = write_keys(&client, "k", 60).await;

    // Node 2's volume comes back empty; it starts with the same flags.
    c.kill(2);
    std::fs::remove_dir_all(&c.nodes[2].dir).unwrap();
    c.spawn(2);
    let started = Instant::now();
    let status = c.wait_exit(2, Duration::from_secs(10));
    println!("wiped node refused in {:?}", started.elapsed());
    assert!(!status.success(), "the wiped node started: {status}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = std::fs::read_to_string(c.log_path(2)).unwrap();
    let error = log
        .lines()
        .rfind(|l| l.starts_with("raftkv: "))
        .expect("a one-line error on stderr");
    let cluster_id = c.status(0).await.unwrap().cluster_id;
    for part in [
        "node 2 is empty",
        &format!("already belongs to cluster {cluster_id:?}"),
        "raftctl member remove 2",
        "--learner",
        "--join",
        "docs/operations.md",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    assert_all_present(&client, &acked, "after the refusal").await;

    // Started with --join before its old incarnation is removed, it waits:
    // joining now would make it a voter with an empty log.
    c.spawn_with(2, &["--join"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(c.running(2), "the joining node gave up");
    assert!(
        !c.nodes[2].dir.join("identity").exists(),
        "joined while still a voter"
    );

    // The recovery of docs/operations.md, through raftctl.
    let (peer, addr) = (c.nodes[2].peer.clone(), c.nodes[2].client.clone());
    let add = [
        "member",
        "add",
        "2",
        "--peer-addr",
        &peer,
        "--client-addr",
        &addr,
    ];
    let (ok, out) = c.raftctl(&["member", "remove", "2"]);
    assert!(ok, "member remove: {out}");
    let (ok, out) = c.raftctl(&[&add[..], &["--learner"]].concat());
    assert!(ok, "member add --learner: {out}");
    acked.extend(write_keys(&client, "j", 20).await);
    let leader = c.leader(&[0, 1], Duration::from_secs(5)).await;
    let target = c.status(leader).await.unwrap().commit_index;
    c.wait_caught_up(2, target, 0, "the joined node to catch up")
        .await;
    let promoted = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = c.raftctl(&add);
        if ok {
            break;
        }
        assert!(Instant::now() < promoted, "promote: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let members = client.members().await.unwrap();
    assert!(
        members.members.iter().any(|m| m.id == 2 && m.voter),
        "node 2 is not a voter: {members:?}"
    );

    // Node 2 now votes: without one of the original nodes, it makes the majority.
    let gone = c.leader(&[0, 1, 2], Duration::from_secs(5)).await;
    let gone = if gone == 2 { 0 } else { gone };
    c.kill(gone);
    let client = c.client().await;
    client.set(b"after", b"rejoin").await.unwrap();
    acked.extend(write_keys(&client, "z", 5).await);
    assert_all_present(&client, &acked, "with node 2 voting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_members_wait_for_a_late_one_before_bootstrapping() {
    let mut c = Cluster::plan("late", 3, &[]);
    c.spawn(0);
    c.spawn(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..2 {
        assert!(c.running(i), "node {i} gave up waiting");
        assert!(
            !c.nodes[i].dir.join("identity").exists(),
            "node {i} bootstrapped without node 2"
        );
        let (code, body) = http_get(&c.nodes[i].http, "/readyz").unwrap();
        assert_eq!(code, 503, "{body}");
        assert_eq!(http_get(&c.nodes[i].http, "/livez").unwrap().0, 200);
    }
    c.spawn(2);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    client.set(b"late", b"ok").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        // A founder re-asks a peer that was down with backoff (< 1 s).
        wait_for("every node to serve", Duration::from_secs(5), || async {
            c.status(i).await.is_some()
        })
        .await;
        ids.push(c.status(i).await.unwrap().cluster_id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let members = client.members().await.unwrap();
    assert_eq!(members.members.iter().filter(|m| m.voter).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_at_run_time_stays_reachable_after_a_leader_change() {
    // Nodes 0..2 found the cluster; node 3 is in no one's --peers list.
    let mut c = Cluster::plan("grow", 4, &[]);
    c.founders = 3;
    for i in 0..3 {
        c.spawn(i);
    }
    let first = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let client = c.client().await;
    client.set(b"before", b"growth").await.unwrap();

    c.spawn_with(3, &["--join"]);
    let (peer, client_addr) = (c.nodes[3].peer.clone(), c.nodes[3].client.clone());
    let (ok, out) = c.raftctl(&[
        "member",
        "add",
        "3",
        "--peer-addr",
        &peer,
        "--client-addr",
        &client_addr,
    ]);
    assert!(ok, "member add: {out}");
    let members = client.members().await.unwrap();
    assert!(
        members.members.iter().any(|m| m.id == 3 && m.voter),
        "node 3 is not a voter: {members:?}"
    );

    // Only `first` was told node 3's addresses; the next leader must have
    // learned them from the log, or node 3 stops receiving entries.
    let next = (first + 1) % 3;
    c.transfer_to(&client, next).await;
    c.kill(first);
    for i in 0..20 {
        client.set(format!("k{i}").as_bytes(), b"v").await.unwrap();
    }
    let target = c.status(next).await.unwrap().commit_index;
    c.wait_caught_up(3, target, 0, "node 3 to follow the new leader")
        .await;
    let status = c.status(3).await.unwrap();
    assert_eq!(status.leader, Some(next as u64), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_lease_is_refused_and_not_ready() {
    let mut c = Cluster::plan("lease-mismatch", 3, &[]);
    c.spawn(0);
    c.spawn(1);
    // Node 2's lease differs (default 250 ms): the others must not count it.
    c.spawn_with(2, &["--lease-ms", "200"]);
    let leader = c.leader(&[0, 1], Duration::from_secs(15)).await;
    let client = c.client().await;
    client.set(b"k", b"v").await.unwrap();

    let http = c.nodes[2].http.clone();
    wait_for("node 2's /readyz to fail", Duration::from_secs(10), || {
        let http = http.clone();
        async move {
            http_get(&http, "/readyz")
                .is_ok_and(|(code, body)| code == 503 && body.contains("lease parameters differ"))
        }
    })
    .await;
    let healthy = c.nodes[leader].http.clone();
    wait_for("the leader's /readyz", Duration::from_secs(10), || {
        let http = healthy.clone();
        async move { http_get(&http, "/readyz").is_ok_and(|(code, _)| code == 200) }
    })
    .await;
    let status = c.status(leader).await.unwrap();
    let problem = status.peer_problems.join("\n");
    assert!(
        problem.contains("node 2")
            && problem.contains("lease 200 ms")
            && problem.contains("lease 250 ms"),
        "{problem}"
    );
    // Node 2 never applied the write: its messages and the leader's are refused.
    assert!(c.status(2).await.unwrap().applied_index < status.applied_index);

    // One clear error per peer and direction, not one per reconnect.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(c.log_path(2)).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lease parameters differ"))
        .collect();
    assert!(!lines.is_empty() && lines.len() <= 4, "{lines:#?}");
    assert!(lines[0].contains("lease 200 ms") && lines[0].contains("lease 250 ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_1_mib_values_without_a_stream_reset() {
    let c = Cluster::start("catch-up-1mib", 3);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let client = c.client().await;
    c.signal(follower, "-STOP");
    let value = vec![b'x'; 1 << 20];
    for i in 0..24 {
        client
            .set(format!("big{i}").as_bytes(), &value)
            .await
            .unwrap();
    }
    c.signal(follower, "-CONT");
    let applied = c.status(leader).await.unwrap().applied_index;
    c.wait_caught_up(follower, applied, 0, "the follower to catch up")
        .await;
    for i in [leader, follower] {
        let log = std::fs::read_to_string(c.log_path(i)).unwrap();
        let resets: Vec<&str> = log.lines().filter(|l| l.contains("too large")).collect();
        assert!(resets.is_empty(), "node {i}: {resets:#?}");
    }
}
