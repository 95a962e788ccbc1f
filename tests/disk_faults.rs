//! Process tests of what a node does when its disk fails under it
//! (docs/node.md, "When the disk fails"):
//!
//! - an fsync that fails (injected with libfiu, Debian `fiu-utils`) stops
//!   the node instead of retrying, with a line naming the file, and no
//!   write the cluster acknowledged is lost;
//! - a volume that fills up (a small tmpfs; needs root) stops the node
//!   with a line saying the volume is full, the others go on, and the node
//!   serves again once space returns and it is restarted; with every
//!   volume full, writes fail and nothing acknowledged is lost.
//!
//! Each test prints SKIPPED, and passes, where its tool is missing.

mod common;

use common::cluster::Cluster;
use common::wait::{wait_exit, wait_for_async};
use raftkv::client::Client;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The keys a background writer had acknowledged, in order.
type Acked = Arc<Mutex<Vec<String>>>;

/// A background writer: `prefix-0`, `prefix-1`, … one after another
/// until stopped, recording each acknowledged key. A failed write is not
/// recorded (it may or may not have taken effect) and the writer goes on
/// with the next key.
struct Writer {
    acked: Acked,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: Client, prefix: &str) -> Writer {
        let acked: Acked = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let record = acked.clone();
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            for n in 0.. {
                if *stopped.borrow_and_update() {
                    break;
                }
                let key = format!("{prefix}-{n}");
                if client.set(key.as_bytes(), b"v").await.is_ok() {
                    record.lock().unwrap().push(key);
                }
            }
        });
        Writer { acked, stop, task }
    }

    /// Stops it after the write in flight; every key it had acknowledged.
    async fn finish(self) -> Vec<String> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        self.acked.lock().unwrap().clone()
    }
}

/// Every key in `keys` reads back from the cluster.
async fn assert_all_present(client: &Client, keys: &[String]) {
    for key in keys {
        let got = client.get(key.as_bytes()).await.unwrap();
        assert!(got.is_some(), "acknowledged write {key} lost");
    }
}

/// Waits until `client` has had `more` further writes acknowledged.
async fn wait_for_writes(acked: &Acked, more: usize, what: &str) {
    let from = acked.lock().unwrap().len();
    wait_for_async(what, Duration::from_secs(20), || async {
        (acked.lock().unwrap().len() >= from + more).then_some(())
    })
    .await;
}

/// `raftctl check`: every member's state hash equal at one index.
fn assert_replicas_agree(cluster: &Cluster) {
    let out = cluster.ctl().run(&["check", "--wait", "10s", "-o", "json"]);
    let json = out.json();
    assert_eq!(json["verdict"], "equal", "{json}");
}

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default()
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_leader_and_no_acknowledged_write_is_lost() {
    if !which("fiu-run") || !which("fiu-ctrl") {
        eprintln!("SKIPPED: fiu-run/fiu-ctrl missing (Debian fiu-utils)");
        return;
    }
    let control = tempfile::tempdir().unwrap();
    let fifo_base = control.path().join("fiu");
    let fifo_base = fifo_base.to_str().unwrap();
    let mut cluster = Cluster::plan("disk-fsync", 3, &[]);
    for i in 0..3 {
        cluster.spawn_under(i, &["fiu-run", "-x", "-f", fifo_base]);
    }
    let client = cluster.client().await;
    let writer = Writer::start(client.clone(), "fsync");
    let acked = &writer.acked;
    wait_for_writes(acked, 50, "writes before the fault").await;

    // From now on every fsync and fdatasync of the leader fails with EIO.
    // fiu-run runs the node in its own process (exec), so the pid is the
    // node's.
    let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(5)).await;
    let pid = cluster.pid(leader).to_string();
    for point in ["posix/io/sync/fdatasync", "posix/io/sync/fsync"] {
        let enabled = Command::new("fiu-ctrl")
            .args(["-f", fifo_base, "-c"])
            .arg(format!("enable name={point},failinfo={}", libc::EIO))
            .arg(&pid)
            .output()
            .unwrap();
        assert!(
            enabled.status.success() && enabled.stderr.is_empty(),
            "fiu-ctrl: {}",
            String::from_utf8_lossy(&enabled.stderr)
        );
    }

    // It stops rather than retry, and says why.
    let status = cluster.wait_exit(leader, Duration::from_secs(10));
    assert!(
        !status.success(),
        "the node must fail, not exit 0: {status}"
    );
    let log = log_of(&cluster, leader);
    assert!(
        log.contains("fsync of") && log.contains("the node stops rather than retry"),
        "no line says the fsync failed:\n{log}"
    );

    // The others carry on, then the node comes back without the fault and
    // catches up; nothing acknowledged is missing, the replicas agree.
    wait_for_writes(acked, 50, "writes after the leader stopped").await;
    cluster.spawn(leader);
    wait_for_writes(acked, 20, "writes after the node came back").await;
    let keys = writer.finish().await;
    assert_all_present(&client, &keys).await;
    assert_replicas_agree(&cluster);
}

/// A tmpfs of `size` mounted on a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// None where mounting is not allowed here (not root, no tmpfs).
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }

    /// Fills the volume with one file until the file system says it is
    /// full; returns the file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
        path
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_stops_its_node_and_it_serves_again_when_space_returns() {
    let volumes = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    for i in 0..3 {
        match Mount::tmpfs(&volumes.path().join(format!("node{i}")), "24m") {
            Some(m) => mounts.push(m),
            None => {
                eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
                return;
            }
        }
    }
    // Declared after the mounts, so the nodes stop before the unmounts.
    let mut cluster = Cluster::plan("disk-full", 3, &[]);
    for (node, mount) in cluster.nodes.iter_mut().zip(&mounts) {
        node.dir = mount.0.join("data");
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    let client = cluster.client().await;
    let writer = Writer::start(client.clone(), "full");
    let acked = &writer.acked;
    wait_for_writes(acked, 50, "writes before the volume fills").await;

    // One follower's volume fills: it stops with a line that says so, and
    // the other two go on.
    let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(5)).await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let filler = mounts[follower].fill();
    let status = cluster.wait_exit(follower, Duration::from_secs(20));
    assert!(!status.success(), "{status}");
    let log = log_of(&cluster, follower);
    assert!(
        log.contains("the volume is full"),
        "no line says the volume is full:\n{log}"
    );
    wait_for_writes(acked, 50, "writes while one volume is full").await;

    // Space returns; restarted, the node catches up and agrees.
    std::fs::remove_file(&filler).unwrap();
    cluster.spawn(follower);
    wait_for_writes(acked, 20, "writes after space returned").await;
    let keys = writer.finish().await;
    assert_all_present(&client, &keys).await;
    assert_replicas_agree(&cluster);

    // Every volume full: a write cannot be made durable on a majority, so
    // it fails instead of being acknowledged. (A small one could still fit
    // in the last page of a log file: this one needs new pages.)
    let fillers: Vec<PathBuf> = mounts.iter().map(Mount::fill).collect();
    let refused = client.set(b"no-room", &[7u8; 256 * 1024]).await;
    assert!(refused.is_err(), "a write was acknowledged on full volumes");
    for i in 0..3 {
        if let Some(mut child) = cluster.nodes[i].child.take() {
            let _ = child.kill();
            wait_exit(
                &mut child,
                format!("node {i} to stop"),
                Duration::from_secs(10),
            );
        }
    }
    for filler in &fillers {
        std::fs::remove_file(filler).unwrap();
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    let client = cluster.client().await;
    assert_all_present(&client, &keys).await;
    client.set(b"room-again", b"v").await.unwrap();
    assert_replicas_agree(&cluster);
}
