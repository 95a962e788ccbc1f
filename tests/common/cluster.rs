//! Real `raftkv` processes on loopback for process tests: a cluster of
//! nodes started with their own data directories and ports (reserved for
//! the test process, so no other socket takes them before a node binds
//! them or while it restarts: ports.rs), killed, paused and restarted,
//! with logs beside the data directories (`node<i>.log`, kept when the
//! test fails).

use super::ctl::{Ctl, CtlOutput, RAFTKV};
use super::ports::free_port;
use super::wait::{Later, wait_exit, wait_for_async};
use raftkv::client::{Client, ClientOptions};
use raftkv::pb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub struct Node {
    pub id: usize,
    pub dir: PathBuf,
    pub client: String,
    pub peer: String,
    pub http: String,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub name: String,
    pub nodes: Vec<Node>,
    /// Flags added to every node's command line.
    pub extra: Vec<String>,
    /// Nodes 0..founders form the initial cluster (`--peers`); a later node
    /// lists the founders and itself, and joins at run time.
    pub founders: usize,
    pub _dirs: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with fresh data directories.
    pub fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_with(name, n, &[])
    }

    /// Starts `n` nodes with `extra` flags each.
    pub fn start_with(name: &str, n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster::plan(name, n, extra);
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    /// `n` nodes with fresh data directories and `extra` flags each, none
    /// started yet.
    pub fn plan(name: &str, n: usize, extra: &[&str]) -> Cluster {
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
    pub fn known_to(&self, i: usize) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(move |n| n.id < self.founders || n.id == i)
    }

    pub fn peers_arg(&self, i: usize) -> String {
        let v: Vec<String> = self
            .known_to(i)
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect();
        v.join(",")
    }

    pub fn client_addrs_arg(&self, i: usize) -> String {
        let v: Vec<String> = self
            .known_to(i)
            .map(|n| format!("{}={}", n.id, n.client))
            .collect();
        v.join(",")
    }

    pub fn command(&self, i: usize) -> Command {
        self.command_on(i, &self.nodes[i].dir)
    }

    /// Node `i`'s command line on the data directory `data`.
    pub fn command_on(&self, i: usize, data: &Path) -> Command {
        let n = &self.nodes[i];
        let mut cmd = Command::new(RAFTKV);
        cmd.args(["--id", &n.id.to_string()])
            .args(["--data-dir", data.to_str().unwrap()])
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

    pub fn log_path(&self, i: usize) -> PathBuf {
        self._dirs.path().join(format!("node{i}.log"))
    }

    pub fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    /// Starts node `i` with `flags` added to its command line.
    pub fn spawn_with(&mut self, i: usize, flags: &[&str]) {
        let mut cmd = self.command(i);
        cmd.args(flags);
        self.launch(i, cmd);
    }

    /// Starts node `i` run by `wrapper` (a program and its first arguments,
    /// e.g. `fiu-run -x`), which gets the node's command line after them.
    pub fn spawn_under(&mut self, i: usize, wrapper: &[&str]) {
        let node = self.command(i);
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(node.get_program())
            .args(node.get_args());
        for (key, value) in node.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        self.launch(i, cmd);
    }

    /// Spawns `cmd` as node `i`, its log appended to `log_path(i)`.
    fn launch(&mut self, i: usize, mut cmd: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("running").id()
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid(i).to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} failed");
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status (within `limit`).
    pub fn terminate(&mut self, i: usize, limit: Duration) -> ExitStatus {
        self.signal(i, "-TERM");
        self.wait_exit(i, limit)
    }

    /// The exit status of node `i`, which must exit within `limit`.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> ExitStatus {
        let mut child = self.nodes[i].child.take().unwrap();
        wait_exit(&mut child, format!("node {i} to exit"), limit)
    }

    /// Whether node `i`'s process is still running.
    pub fn running(&mut self, i: usize) -> bool {
        let child = self.nodes[i].child.as_mut().expect("spawned");
        child.try_wait().unwrap().is_none()
    }

    /// raftctl with every node's client address as its endpoints.
    pub fn ctl(&self) -> Ctl {
        Ctl::new().endpoints(&self.endpoints().join(","))
    }

    /// Runs `raftctl ARGS` against every node's client address.
    pub fn raftctl(&self, args: &[&str]) -> CtlOutput {
        self.ctl().run(args)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client.clone()).collect()
    }

    pub async fn client(&self) -> Client {
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

    /// Polls until one of `among` reports itself leader (the first found;
    /// no check that others agree); returns its index.
    pub async fn leader(&self, among: &[usize], limit: Duration) -> usize {
        let probe = Client::lazy(
            self.endpoints(),
            ClientOptions::default().with_timeout(Duration::from_millis(500)),
        )
        .unwrap();
        wait_for_async(format!("a leader among {among:?}"), limit, || async {
            for &i in among {
                if let Ok(s) = probe.status(&self.nodes[i].client).await {
                    if s.role == "leader" {
                        return Some(i);
                    }
                }
            }
            None
        })
        .await
    }

    /// Hands leadership to node `i`. The call answers once node `i` leads;
    /// a transfer that fails (its TimeoutNow can be lost, e.g. to a peer
    /// stream still reconnecting after a restart) is asked for again.
    pub async fn transfer_to(&self, client: &Client, i: usize) {
        let last = std::sync::Mutex::new(String::new());
        let what = Later(|| format!("node {i} to take over: {}", last.lock().unwrap()));
        wait_for_async(what, Duration::from_secs(10), || async {
            let answer = client.transfer_leader(i as u64).await;
            answer
                .map_err(|e| *last.lock().unwrap() = e.to_string())
                .ok()
        })
        .await;
        assert_eq!(self.leader(&[i], Duration::from_secs(5)).await, i);
    }

    /// Waits until node `i` has applied `applied` and holds a snapshot at or
    /// past `snapshot`.
    pub async fn wait_caught_up(&self, i: usize, applied: u64, snapshot: u64, what: &str) {
        wait_for_async(what, Duration::from_secs(10), || async move {
            self.status(i)
                .await
                .filter(|s| s.applied_index >= applied && s.snapshot_index >= snapshot)
        })
        .await;
    }

    pub async fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        let probe = Client::lazy(
            self.endpoints(),
            ClientOptions::default().with_timeout(Duration::from_millis(500)),
        )
        .unwrap();
        probe.status(&self.nodes[i].client).await.ok()
    }

    /// A raw Kv client pinned to node `i` (no redirects, no retries).
    pub async fn raw(&self, i: usize) -> pb::kv_client::KvClient<tonic::transport::Channel> {
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
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
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
