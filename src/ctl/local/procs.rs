//! The `raftkv` processes of a local cluster: start, watch, signal, stop.
//! Public so process tests can run a cluster the way `raftctl local` does.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::clock::Skew;
use super::disk::Disk;
use super::nodes::{LocalNode, PROXIED_IDS, peers_flag, proxied_server_args, server_args};

/// Running (or dead) `raftkv` processes, one slot per supervised node.
/// `raftctl scale` adds nodes ([`add`](Self::add)) and takes them out of
/// supervision ([`remove`](Self::remove)).
///
/// Children are killed if this is dropped without [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct LocalCluster {
    binary: PathBuf,
    nodes: Vec<LocalNode>,
    /// The founders' `--peers` (a joining node adds itself to it).
    peers: String,
    /// The cluster id, when the founders talk through the link proxies
    /// (see [`start_proxied`](Self::start_proxied)).
    proxied: Option<String>,
    /// The founders as started (a scale may remove some later).
    founders: Vec<LocalNode>,
    children: Vec<Option<Child>>,
    /// The clock each node runs on (None: the real one), kept across the
    /// node's restarts until [`set_skew`](Self::set_skew) changes it.
    skews: Vec<Option<Skew>>,
    /// The disk fault each node runs under (None: a sound disk), kept
    /// across its restarts until [`set_disk`](Self::set_disk) lifts it.
    disks: Vec<Option<Disk>>,
}

impl LocalCluster {
    /// Starts every node of `nodes` with the `raftkv` at `binary`.
    pub fn start(binary: &Path, nodes: Vec<LocalNode>) -> std::io::Result<LocalCluster> {
        LocalCluster::launch(binary, nodes, None)
    }

    /// Starts every node of `nodes`, the founders reaching each other
    /// through the link proxies (`links::Links`, bound by the caller) and
    /// sharing `cluster_id` (`nodes::derived_cluster_id` of the plan).
    pub fn start_proxied(
        binary: &Path,
        nodes: Vec<LocalNode>,
        cluster_id: String,
    ) -> std::io::Result<LocalCluster> {
        LocalCluster::launch(binary, nodes, Some(cluster_id))
    }

    fn launch(
        binary: &Path,
        nodes: Vec<LocalNode>,
        proxied: Option<String>,
    ) -> std::io::Result<LocalCluster> {
        let founders: Vec<LocalNode> = nodes.iter().filter(|n| !n.joins).cloned().collect();
        let mut cluster = LocalCluster {
            binary: binary.to_path_buf(),
            peers: peers_flag(&founders),
            proxied,
            founders,
            children: nodes.iter().map(|_| None).collect(),
            skews: nodes.iter().map(|_| None).collect(),
            disks: nodes.iter().map(|_| None).collect(),
            nodes,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// The index of node `id`, if supervised.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Supervises `node` from now on and starts it; its slot is the last.
    pub fn add(&mut self, node: LocalNode) -> std::io::Result<()> {
        self.nodes.push(node);
        self.children.push(None);
        self.skews.push(None);
        self.disks.push(None);
        let index = self.nodes.len() - 1;
        self.spawn(index).inspect_err(|_| {
            self.nodes.pop();
            self.children.pop();
            self.skews.pop();
            self.disks.pop();
        })
    }

    /// Stops supervising node `index` (stop it first with
    /// [`stop_node`](Self::stop_node)); later slots move down by one.
    pub fn remove(&mut self, index: usize) -> LocalNode {
        // A child still running is killed on drop.
        self.children.remove(index);
        self.skews.remove(index);
        self.disks.remove(index);
        self.nodes.remove(index)
    }

    /// The process id of node `index`, while it runs (for fault tests by hand).
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.children[index].as_ref().and_then(Child::id)
    }

    /// Whether node `index` has a process that has not been seen to exit.
    pub fn is_running(&self, index: usize) -> bool {
        self.children[index].is_some()
    }

    /// Starts node `index` (again), appending its output to its log file.
    pub fn spawn(&mut self, index: usize) -> std::io::Result<()> {
        let disk = self.disks[index].as_ref();
        let moved;
        let node = match disk.and_then(Disk::data_dir) {
            Some(data_dir) => {
                moved = LocalNode {
                    data_dir,
                    ..self.nodes[index].clone()
                };
                &moved
            }
            None => &self.nodes[index],
        };
        if let Some(dir) = node.log_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_file)?;
        writeln!(log, "--- raftctl local: starting node {} ---", node.id)?;
        let mut command = match disk.and_then(|d| d.wrapper(node)) {
            Some(wrapper) => {
                let mut command = Command::new(&wrapper[0]);
                command.args(&wrapper[1..]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        if let Some(disk) = disk {
            writeln!(log, "--- {} ---", disk.describe())?;
        }
        die_with_parent(&mut command);
        let args = match &self.proxied {
            Some(cluster_id) if !node.joins && node.id < PROXIED_IDS => {
                proxied_server_args(node, &self.founders, cluster_id)
            }
            _ => server_args(node, &self.peers),
        };
        if let Some(skew) = &self.skews[index] {
            writeln!(
                log,
                "--- on a clock at {} of real time (libfaketime) ---",
                super::clock::rate_text(skew.rate_ppm)
            )?;
            command.envs(skew.env());
        }
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal's Ctrl-C reaches raftctl only,
            // which then stops the nodes in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", self.binary.display()),
                )
            })?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// The clock node `index` runs on from its next start (None: the real
    /// one).
    pub fn set_skew(&mut self, index: usize, skew: Option<Skew>) {
        self.skews[index] = skew;
    }

    /// The clock node `index` runs on (None: the real one).
    pub fn skew(&self, index: usize) -> Option<&Skew> {
        self.skews[index].as_ref()
    }

    /// The disk fault node `index` runs under from its next start (None:
    /// a sound disk).
    pub fn set_disk(&mut self, index: usize, disk: Option<Disk>) {
        self.disks[index] = disk;
    }

    /// The disk fault node `index` runs under (None: a sound disk).
    pub fn disk(&self, index: usize) -> Option<&Disk> {
        self.disks[index].as_ref()
    }

    /// The ids of the skewed nodes due back on the real clock at `now`.
    pub fn skews_due(&self, now: Instant) -> Vec<u64> {
        self.skews
            .iter()
            .zip(&self.nodes)
            .filter(|(skew, _)| skew.as_ref().is_some_and(|s| s.until <= now))
            .map(|(_, node)| node.id)
            .collect()
    }

    /// The nodes whose processes exited since the last call, with how
    /// (recorded too for a node whose disk fails).
    pub fn reap(&mut self) -> Vec<(usize, ExitStatus)> {
        let mut exited = Vec::new();
        for (index, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push((index, status));
                *slot = None;
                if let Some(disk) = &mut self.disks[index] {
                    disk.exited(status, &self.nodes[index].log_file);
                }
            }
        }
        exited
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`, `libc::SIGSTOP`) to node `index`.
    pub fn signal(&self, index: usize, signal: i32) -> std::io::Result<()> {
        let pid = self.children[index]
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| std::io::Error::other(format!("node {index} is not running")))?;
        send_signal(pid, signal)
    }

    /// Stops node `index` the way a pod is deleted: SIGKILL if `grace` is
    /// zero, else SIGTERM and SIGKILL after `grace`; waits until it has
    /// exited. True if it had to be killed after the grace period.
    pub async fn stop_node(&mut self, index: usize, grace: Duration) -> bool {
        let Some(child) = self.children[index].as_mut() else {
            return false;
        };
        let mut killed = false;
        if grace.is_zero() {
            let _ = child.start_kill();
        } else if let Some(pid) = child.id() {
            let _ = send_signal(pid, libc::SIGTERM);
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                killed = true;
                let _ = child.start_kill();
            }
        }
        let _ = child.wait().await;
        self.children[index] = None;
        killed
    }

    /// SIGTERM to every node, up to `grace` for them to exit, then SIGKILL;
    /// the ids of the nodes that had to be killed.
    pub async fn shutdown(&mut self, grace: Duration) -> Vec<u64> {
        for child in self.children.iter().flatten() {
            if let Some(pid) = child.id() {
                // A node that already exited is no error here.
                let _ = send_signal(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        let mut killed = Vec::new();
        for (index, slot) in self.children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                killed.push(self.nodes[index].id);
                let _ = child.kill().await;
            }
            *slot = None;
        }
        killed
    }
}

/// Nodes get SIGTERM when raftctl's spawning thread (the main thread) ends,
/// even if raftctl is SIGKILLed, so no orphan keeps the cluster's ports.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid) run in the child.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other(
                    "raftctl exited while starting a node",
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// kill(2) of process `pid` (a node process: one of our children, or, for
/// `chaos --fault pause`, one of the supervisor's).
pub(crate) fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::local::nodes::plan;

    /// A stand-in server: `sh` that ignores its flags and sleeps.
    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("raftkv");
        std::fs::write(&path, format!("#!/bin/sh\necho \"args: $*\"\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn starts_reaps_and_stops_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(dir.path(), "exec sleep 30");
        let nodes = plan(3, 17379, &dir.path().join("data")).unwrap();
        let mut cluster = LocalCluster::start(&binary, nodes).unwrap();
        // Let the scripts write their first line.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(cluster.reap().is_empty());

        cluster.signal(1, libc::SIGKILL).unwrap();
        let mut exited = Vec::new();
        for _ in 0..100 {
            exited = cluster.reap();
            if !exited.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(exited.len(), 1);
        assert_eq!(exited[0].0, 1);
        assert!(!cluster.is_running(1));

        cluster.spawn(1).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = cluster.shutdown(Duration::from_secs(5)).await;
        assert!(killed.is_empty(), "sleep exits on SIGTERM");

        let log = std::fs::read_to_string(&cluster.nodes()[1].log_file).unwrap();
        assert_eq!(log.matches("starting node 1").count(), 2);
        assert!(log.contains("args: --id 1 --data-dir"), "{log}");
    }

    #[tokio::test]
    async fn stragglers_are_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(dir.path(), "trap '' TERM\nwhile :; do sleep 0.1; done");
        let nodes = plan(1, 17479, &dir.path().join("data")).unwrap();
        let mut cluster = LocalCluster::start(&binary, nodes).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let killed = cluster.shutdown(Duration::from_millis(300)).await;
        assert_eq!(killed, vec![0]);
    }
}
