//! Process tests of the storage guarantees a node shows an operator: a torn
//! tail record (a crash mid-write) is cut and logged and the node serves its
//! data; a flipped byte in the middle of a segment stops the node with an
//! error naming the file and the offset, and changes nothing on disk.

mod common;

use common::cluster::Cluster;
use common::ctl::Ctl;
use common::ports::{self, free_port};
use common::wait::wait_exit;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The data directory of a single-node cluster.
fn data(node: &Cluster) -> PathBuf {
    node.nodes[0].dir.clone()
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
    let mut node = Cluster::plan("storage-faults", 1, &[]);
    node.spawn(0);
    let client = node.client().await;
    for i in 0..20 {
        let k = format!("k{i}");
        client.set(k.as_bytes(), b"v").await.unwrap();
    }
    node.kill(0);

    // A crash in the middle of writing the last record.
    let last = segments(&data(&node)).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    node.spawn(0);
    let client = node.client().await;
    // Only the torn record is lost; the writes before it are all there.
    for i in 0..19 {
        let k = format!("k{i}");
        assert!(client.get(k.as_bytes()).await.unwrap().is_some(), "{k}");
    }
    client.set(b"after", b"restart").await.unwrap();
    node.kill(0);
    let log = std::fs::read_to_string(node.log_path(0)).unwrap();
    assert!(
        log.contains("torn record"),
        "no torn-tail warning in:\n{log}"
    );

    // One flipped byte inside the oldest segment: refuse, name file and offset.
    let first = segments(&data(&node)).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    let before = std::fs::read(&first).unwrap();
    let (code, err) = finish(&mut node.command(0));
    assert_eq!(code, Some(1), "{err}");
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

/// Runs `cmd` to its end (within 10 s): its exit code and stderr.
fn finish(cmd: &mut Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_exit(
        &mut child,
        format!("{cmd:?} to end"),
        Duration::from_secs(10),
    );
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_and_dump_are_refused_on_a_held_data_directory() {
    let mut node = Cluster::plan("data-dir-lock", 1, &[]);
    node.spawn(0);
    let holder = node.pid(0).to_string();
    node.client().await.set(b"k", b"v").await.unwrap();

    // Same directory, its own ports: it must stop at once, naming the holder.
    let other = Cluster::plan("data-dir-lock-2", 1, &[]);
    let started = Instant::now();
    let (code, err) = finish(&mut other.command_on(0, &data(&node)));
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

    let data = data(&node);
    let data = data.to_str().unwrap();
    let ctl = Ctl::new();
    let (code, err) = finish(&mut ctl.command(&["dump", data]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&holder) && err.contains("--force"), "{err}");
    let (code, err) = finish(&mut ctl.command(&["dump", "--force", data]));
    assert_eq!(code, Some(0), "{err}");

    // SIGKILL releases the lock: no stale lock after a crash.
    node.kill(0);
    let (code, err) = finish(&mut ctl.command(&["dump", data]));
    assert_eq!(code, Some(0), "{err}");
    node.spawn(0);
    node.client().await.get(b"k").await.unwrap();
    node.kill(0);
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
