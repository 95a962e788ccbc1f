//! Process tests of the storage guarantees a node shows an operator: a torn
//! tail record (a crash mid-write) is cut and logged and the node serves its
//! data; a flipped byte in the middle of a segment stops the node with an
//! error naming the file and the offset, and changes nothing on disk.

#[path = "common/ports.rs"]
mod ports;

use ports::free_port;
use raftkv::client::{Client, ClientOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_raftkv");

/// A single-node cluster on one data directory, restartable.
struct OneNode {
    dir: tempfile::TempDir,
    client: String,
    peer: String,
    http: String,
    log: PathBuf,
}

impl OneNode {
    fn new(name: &str) -> OneNode {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        OneNode {
            client: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            http: format!("127.0.0.1:{}", free_port()),
            log,
            dir,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self) -> Command {
        self.command_in(&self.data())
    }

    /// This node's command line, on the data directory `data`.
    fn command_in(&self, data: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--id", "0", "--data-dir", data.to_str().unwrap()])
            .args(["--client-addr", &self.client, "--peer-addr", &self.peer])
            .args(["--http-addr", &self.http])
            .args(["--peers", &format!("0={}", self.peer)])
            .env_remove("RAFTKV_CLUSTER_ID");
        cmd
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap()
    }

    /// Runs the node expecting it to refuse to start.
    fn refused(&self) -> Output {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the node started on a corrupt data directory");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    async fn client(&self) -> Client {
        let options = ClientOptions::default().with_timeout(Duration::from_secs(10));
        Client::connect(vec![self.client.clone()], options)
            .await
            .unwrap()
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// WAL segment files, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_and_a_flipped_byte_stops_the_node() {
    let node = OneNode::new("storage-faults");
    let child = node.spawn();
    let client = node.client().await;
    for i in 0..20 {
        let k = format!("k{i}");
        client.set(k.as_bytes(), b"v").await.unwrap();
    }
    kill(child);

    // A crash in the middle of writing the last record.
    let last = segments(&node.data()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let child = node.spawn();
    let client = node.client().await;
    // Only the torn record is lost; the writes before it are all there.
    for i in 0..19 {
        let k = format!("k{i}");
        assert!(client.get(k.as_bytes()).await.unwrap().is_some(), "{k}");
    }
    client.set(b"after", b"restart").await.unwrap();
    kill(child);
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(
        log.contains("torn record"),
        "no torn-tail warning in:\n{log}"
    );

    // One flipped byte inside the oldest segment: refuse, name file and offset.
    let first = segments(&node.data()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    let before = std::fs::read(&first).unwrap();
    let out = node.refused();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name) && err.contains("offset"),
        "error does not name the file and offset: {err}"
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        before,
        "corrupt file changed"
    );
}

/// Kills its node when dropped, also when a test fails half-way.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            kill(child);
        }
    }
}

/// Runs `cmd` to its end (within 10 s): its exit code and stderr.
fn finish(cmd: &mut Command) -> (Option<i32>, String) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            kill(child);
            panic!("still running after 10 s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_and_dump_are_refused_on_a_held_data_directory() {
    let node = OneNode::new("data-dir-lock");
    let first = KillOnDrop(Some(node.spawn()));
    let holder = first.0.as_ref().unwrap().id().to_string();
    node.client().await.set(b"k", b"v").await.unwrap();

    // Same directory, its own ports: it must stop at once, naming the holder.
    let other = OneNode::new("data-dir-lock-2");
    let started = Instant::now();
    let (code, err) = finish(&mut other.command_in(&node.data()));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("process {holder}")),
        "no holder pid in: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("raftkv:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    // The first node still serves.
    assert_eq!(
        node.client().await.get(b"k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );

    let raftctl = env!("CARGO_BIN_EXE_raftctl");
    let data = node.data();
    let (code, err) = finish(Command::new(raftctl).arg("dump").arg(&data));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&holder) && err.contains("--force"), "{err}");
    let (code, err) = finish(Command::new(raftctl).args(["dump", "--force"]).arg(&data));
    assert_eq!(code, Some(0), "{err}");

    // SIGKILL releases the lock: no stale lock after a crash.
    drop(first);
    let (code, err) = finish(Command::new(raftctl).arg("dump").arg(&data));
    assert_eq!(code, Some(0), "{err}");
    let restarted = node.spawn();
    node.client().await.get(b"k").await.unwrap();
    kill(restarted);
}

/// The reservation the process tests rely on (tests/common/ports.rs). Here,
/// not in ports.rs: a binary that also runs Docker containers would race
/// with docker-proxy, which binds host ports with SO_REUSEADDR too.
#[test]
fn a_reserved_port_is_refused_to_others_but_a_listener_can_take_it() {
    let port = free_port();
    assert!(ports::hold(port).is_none(), "port {port} is held");
    for _ in 0..2 {
        // A node's listener (SO_REUSEADDR), started and restarted.
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        listener.accept().unwrap();
    }
    let base = ports::free_base_port(3);
    for p in [base, base + 1, base + 2, base + 10, base + 22] {
        assert!(ports::hold(p).is_none(), "port {p} of base {base} is held");
    }
}
