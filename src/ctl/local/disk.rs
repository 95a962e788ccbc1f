//! A local node whose disk fails, for `raftctl chaos --faults disk=...`
//! (docs/raftctl.md, "Disk faults on local nodes"). The supervisor owns the
//! node's process and directories, so it restarts the node where its disk
//! can fail, makes the disk fail when asked, and puts the node back on a
//! sound disk:
//!
//! - `fsync`: the node runs under libfiu's `fiu-run -x` with its remote
//!   control (fifos named after DIR/node-I.fiu). Failing enables the POSIX
//!   fsync and fdatasync failure points of that process with `fiu-ctrl`:
//!   each returns EIO from then on. A process started after it stopped
//!   runs without libfiu.
//! - `full`: the node's data is copied onto a tmpfs of its own
//!   (DIR/node-I.volume, a little larger than the data; mounting needs
//!   root) and the node runs there. Failing fills the volume with a file,
//!   so the node's next write gets ENOSPC. Restoring copies the data back
//!   into the node's own directory and unmounts the volume.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use tokio::time::Instant;

use super::control::Answer;
use super::nodes::LocalNode;
use super::procs::LocalCluster;
use crate::ctl::fault::disk::{DiskFault, DiskState, DiskStep, NodeExit};

/// The failure points that make a process's fsyncs fail (libfiu's POSIX
/// preload library).
const FSYNC_POINTS: [&str; 2] = ["posix/io/sync/fsync", "posix/io/sync/fdatasync"];

/// Room on a small volume beyond the data it starts with: enough for the
/// node to start and serve until the volume is filled.
const HEADROOM: u64 = 16 << 20;

/// How long `fiu-ctrl` may take (it blocks on a fifo nobody reads once the
/// process is gone).
const FIU_CTRL_LIMIT: Duration = Duration::from_secs(5);

/// Whether a program is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether this machine can fail a node's fsyncs: libfiu's tools are
/// installed. An error says what to install.
pub fn fiu_tools() -> Result<(), String> {
    match ["fiu-run", "fiu-ctrl"].into_iter().find(|p| !on_path(p)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "{missing} is not installed: install libfiu's tools (Debian's `fiu-utils` package)"
        )),
    }
}

/// Whether this process can mount a small tmpfs (root, `mount` and
/// `umount` installed, and the kernel letting it): it tries one. An error
/// says what is missing.
pub fn can_mount() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    if unsafe { libc::geteuid() } != 0 {
        return Err("mounting the node's small volume (a tmpfs) needs root".into());
    }
    if let Some(missing) = ["mount", "umount"].into_iter().find(|p| !on_path(p)) {
        return Err(format!("{missing} is not installed (util-linux)"));
    }
    let probe = std::env::temp_dir().join(format!("raftctl-mount-probe-{}", std::process::id()));
    std::fs::create_dir_all(&probe).map_err(|e| format!("{}: {e}", probe.display()))?;
    let mounted = mount_tmpfs(&probe, 1 << 20);
    let unmounted = mounted.as_ref().map_or(Ok(()), |()| unmount(&probe));
    let _ = std::fs::remove_dir(&probe);
    mounted
        .and(unmounted)
        .map_err(|e| format!("cannot mount a tmpfs here: {e}"))
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn mount_tmpfs(dir: &Path, bytes: u64) -> Result<(), String> {
    let mib = bytes.div_ceil(1 << 20);
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
        .arg("raftkv-small-volume")
        .arg(dir))
}

fn unmount(dir: &Path) -> Result<(), String> {
    run(Command::new("umount").arg(dir))
}

/// How far a disk fault has gone.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// The node runs where its disk can fail; it has not failed yet.
    Ready,
    /// The disk fails.
    Failing,
    /// The node stopped after its disk failed.
    Exited(NodeExit),
}

/// Node's disk fault, kept across the node's restarts until restored.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub fault: DiskFault,
    pub stage: Stage,
    /// When the supervisor restores the node by itself.
    pub until: Instant,
    /// `full`: the small volume's mount point.
    volume: Option<PathBuf>,
}

/// The base of `fiu-run`'s control fifos for `node` (it appends
/// `-PID.in` and `-PID.out`).
fn fifo_base(node: &LocalNode) -> PathBuf {
    node.data_dir.with_extension("fiu")
}

impl Disk {
    /// The command a node runs under, before its binary: `fiu-run` until
    /// the node stopped for its failing fsyncs.
    pub fn wrapper(&self, node: &LocalNode) -> Option<Vec<OsString>> {
        let wrapped = self.fault == DiskFault::Fsync && !matches!(self.stage, Stage::Exited(_));
        wrapped.then(|| {
            vec![
                "fiu-run".into(),
                "-x".into(),
                "-f".into(),
                fifo_base(node).into_os_string(),
            ]
        })
    }

    /// Where the node keeps its data meanwhile, if not in its own directory.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.volume.as_ref().map(|v| v.join("data"))
    }

    /// What the node's log says while it runs under this fault.
    pub fn describe(&self) -> String {
        match &self.volume {
            Some(volume) => format!("its data on a small volume, {}", volume.display()),
            None => "under libfiu (fiu-run), its fsyncs to fail on request".into(),
        }
    }

    /// Records how the node exited, if its disk was failing.
    pub fn exited(&mut self, status: ExitStatus, log_file: &Path) {
        if self.stage == Stage::Failing {
            self.stage = Stage::Exited(NodeExit {
                status: status.to_string(),
                failed: !status.success(),
                last_line: last_line(log_file),
            });
        }
    }
}

/// The last non-empty line of `path` (the node's reason, when it stopped
/// itself); empty if it cannot be read.
fn last_line(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut tail = Vec::new();
    let _ = file.read_to_end(&mut tail);
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string()
}

/// Carries out `step` on node `id` (see [`DiskStep`]): `grace` to stop it
/// where it restarts, `restore_after` until the supervisor restores it by
/// itself.
pub async fn step(
    cluster: &mut LocalCluster,
    id: u64,
    step: DiskStep,
    grace: Duration,
    restore_after: Duration,
) -> Answer {
    let Some(index) = cluster.index_of(id) else {
        return Answer::Error(format!("the local cluster has no node {id}"));
    };
    let done = match step {
        DiskStep::Prepare(fault) => prepare(cluster, index, fault, grace, restore_after).await,
        DiskStep::Fail => fail(cluster, index).await,
        DiskStep::Look => Ok(()),
        DiskStep::Restore => restore(cluster, index, grace).await,
    };
    match done {
        Ok(()) => Answer::Disk(state(cluster, index)),
        Err(e) => Answer::Error(format!("node {id}: {e}")),
    }
}

fn state(cluster: &LocalCluster, index: usize) -> DiskState {
    DiskState {
        pid: cluster.pid(index),
        exit: cluster.disk(index).and_then(|d| match &d.stage {
            Stage::Exited(exit) => Some(exit.clone()),
            _ => None,
        }),
    }
}

/// Restarts node `index` where its disk can fail (see the module's
/// comment).
async fn prepare(
    cluster: &mut LocalCluster,
    index: usize,
    fault: DiskFault,
    grace: Duration,
    restore_after: Duration,
) -> Result<(), String> {
    if cluster.disk(index).is_some() {
        return Err("its disk already fails; restore it first".into());
    }
    if cluster.skew(index).is_some() {
        return Err("it runs on a skewed clock; one fault at a time".into());
    }
    match fault {
        DiskFault::Fsync => fiu_tools()?,
        DiskFault::Full => can_mount()?,
    }
    cluster.stop_node(index, grace).await;
    let node = cluster.nodes()[index].clone();
    let volume = match fault {
        DiskFault::Fsync => None,
        DiskFault::Full => match move_to_volume(&node) {
            Ok(volume) => Some(volume),
            Err(e) => {
                // Back on its own directory, which the failed move left as
                // it was.
                let started = cluster.spawn(index).map_err(|s| format!(", and {s}"));
                return Err(format!("{e}{}", started.err().unwrap_or_default()));
            }
        },
    };
    let disk = Disk {
        fault,
        stage: Stage::Ready,
        until: Instant::now() + restore_after,
        volume,
    };
    eprintln!("node {} restarted on request: {}", node.id, disk.describe());
    cluster.set_disk(index, Some(disk));
    cluster
        .spawn(index)
        .map_err(|e| format!("stopped but did not start: {e}"))
}

/// Makes node `index`'s disk fail now.
async fn fail(cluster: &mut LocalCluster, index: usize) -> Result<(), String> {
    let node = cluster.nodes()[index].clone();
    let Some(disk) = cluster.disk(index).cloned() else {
        return Err("its disk was not prepared to fail".into());
    };
    if disk.stage != Stage::Ready {
        return Err(format!(
            "its disk fault is past preparing ({:?})",
            disk.stage
        ));
    }
    match (&disk.volume, cluster.pid(index)) {
        (Some(volume), _) => fill(volume)?,
        (None, Some(pid)) => enable_fsync_failures(&node, pid).await?,
        (None, None) => return Err("it is not running: no process to fail".into()),
    }
    eprintln!(
        "node {}: its disk fails on request ({})",
        node.id,
        disk.fault.name()
    );
    cluster.set_disk(
        index,
        Some(Disk {
            stage: Stage::Failing,
            ..disk
        }),
    );
    Ok(())
}

/// Stops node `index` if it runs, puts it back on a sound disk and starts
/// it; also how the supervisor ends a fault that is due.
pub async fn restore(
    cluster: &mut LocalCluster,
    index: usize,
    grace: Duration,
) -> Result<(), String> {
    if cluster.disk(index).is_none() {
        return Ok(());
    }
    cluster.stop_node(index, grace).await;
    release(cluster, index)?;
    let id = cluster.nodes()[index].id;
    eprintln!("node {id} restarted on request on a sound disk");
    cluster
        .spawn(index)
        .map_err(|e| format!("stopped but did not start: {e}"))
}

/// Lifts stopped node `index`'s disk fault: its data back in its own
/// directory, the volume unmounted, libfiu's fifos removed. The fault is
/// kept if the data could not be moved back (so that a later attempt can).
pub fn release(cluster: &mut LocalCluster, index: usize) -> Result<(), String> {
    let node = cluster.nodes()[index].clone();
    if let Some(volume) = cluster.disk(index).and_then(|d| d.volume.clone()) {
        move_back(&node, &volume)?;
    }
    cluster.set_disk(index, None);
    remove_fifos(&node);
    Ok(())
}

/// The ids of the nodes whose disk faults are due to end at `now`.
pub fn due(cluster: &LocalCluster, now: Instant) -> Vec<u64> {
    (0..cluster.nodes().len())
        .filter(|&i| cluster.disk(i).is_some_and(|d| d.until <= now))
        .map(|i| cluster.nodes()[i].id)
        .collect()
}

async fn enable_fsync_failures(node: &LocalNode, pid: u32) -> Result<(), String> {
    let base = fifo_base(node);
    for point in FSYNC_POINTS {
        let mut command = tokio::process::Command::new("fiu-ctrl");
        command
            .arg("-f")
            .arg(&base)
            .arg("-c")
            .arg(format!("enable name={point},failinfo={}", libc::EIO))
            .arg(pid.to_string())
            .kill_on_drop(true);
        let out = tokio::time::timeout(FIU_CTRL_LIMIT, command.output())
            .await
            .map_err(|_| format!("fiu-ctrl did not answer within {FIU_CTRL_LIMIT:?}"))?
            .map_err(|e| format!("cannot run fiu-ctrl: {e}"))?;
        // fiu-ctrl reports a refused command on stderr, with status 0.
        if !out.status.success() || !out.stderr.is_empty() {
            return Err(format!(
                "fiu-ctrl could not enable {point} in process {pid} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Removes the control fifos libfiu left beside `node`'s data directory.
fn remove_fifos(node: &LocalNode) {
    let base = fifo_base(node);
    let (Some(dir), Some(prefix)) = (base.parent(), base.file_name()) else {
        return;
    };
    let prefix = format!("{}-", prefix.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The bytes of the files under `dir`.
fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        total += if kind.is_dir() {
            tree_size(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

/// Copies the directories and files under `from` into `to` (made), each
/// file synced: the copy is the node's durable state from then on.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        } else {
            return Err(std::io::Error::other(format!(
                "{} is neither a file nor a directory",
                entry.path().display()
            )));
        }
    }
    std::fs::File::open(to)?.sync_all()
}

/// Mounts a small volume beside stopped `node`'s data directory and copies
/// the data onto it; the mount point. The node's own directory is left as
/// it was.
fn move_to_volume(node: &LocalNode) -> Result<PathBuf, String> {
    let volume = node.data_dir.with_extension("volume");
    let size = tree_size(&node.data_dir)
        .map_err(|e| format!("cannot measure {}: {e}", node.data_dir.display()))?;
    std::fs::create_dir_all(&volume).map_err(|e| format!("{}: {e}", volume.display()))?;
    mount_tmpfs(&volume, size + HEADROOM)?;
    if let Err(e) = copy_tree(&node.data_dir, &volume.join("data")) {
        let _ = unmount(&volume);
        return Err(format!(
            "cannot copy {} onto its small volume: {e}",
            node.data_dir.display()
        ));
    }
    Ok(volume)
}

/// Copies the data on `volume` back into stopped `node`'s own directory
/// (through a new directory renamed into place, so that a failure leaves
/// one whole copy), then unmounts the volume.
fn move_back(node: &LocalNode, volume: &Path) -> Result<(), String> {
    let dir = &node.data_dir;
    let fresh = dir.with_extension("restoring");
    let stale = dir.with_extension("stale");
    let _ = std::fs::remove_dir_all(&fresh);
    let _ = std::fs::remove_file(volume.join("filler"));
    copy_tree(&volume.join("data"), &fresh)
        .map_err(|e| format!("cannot copy its data back from {}: {e}", volume.display()))?;
    std::fs::rename(dir, &stale)
        .and_then(|()| std::fs::rename(&fresh, dir))
        .map_err(|e| format!("cannot put its data back into {}: {e}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&stale);
    unmount(volume)?;
    let _ = std::fs::remove_dir(volume);
    Ok(())
}

/// Fills `volume` with one file until the file system says it is full.
fn fill(volume: &Path) -> Result<(), String> {
    let path = volume.join("filler");
    let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot fill {}: {e}", volume.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::local::nodes::plan;

    #[test]
    fn fsync_faults_wrap_the_node_until_it_stopped_and_full_ones_move_its_data() {
        let node = plan(3, 7379, Path::new("d")).unwrap().remove(1);
        let mut disk = Disk {
            fault: DiskFault::Fsync,
            stage: Stage::Ready,
            until: Instant::now(),
            volume: None,
        };
        let wrapper = disk.wrapper(&node).unwrap();
        assert_eq!(wrapper, ["fiu-run", "-x", "-f", "d/node-1.fiu"]);
        assert_eq!(disk.data_dir(), None);
        disk.stage = Stage::Exited(NodeExit {
            status: "exit status: 1".into(),
            failed: true,
            last_line: String::new(),
        });
        assert_eq!(disk.wrapper(&node), None, "restarted without libfiu");

        let full = Disk {
            fault: DiskFault::Full,
            stage: Stage::Ready,
            until: Instant::now(),
            volume: Some(PathBuf::from("d/node-1.volume")),
        };
        assert_eq!(full.wrapper(&node), None);
        assert_eq!(full.data_dir(), Some(PathBuf::from("d/node-1.volume/data")));
    }

    #[test]
    fn an_exit_is_recorded_only_once_the_disk_fails_with_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node-0.log");
        std::fs::write(&log, "started\nraftkv: fsync of x failed\n\n").unwrap();
        let status = std::process::Command::new("false").status().unwrap();
        let mut disk = Disk {
            fault: DiskFault::Fsync,
            stage: Stage::Ready,
            until: Instant::now(),
            volume: None,
        };
        // An exit before the disk failed is not the fault's.
        disk.exited(status, &log);
        assert_eq!(disk.stage, Stage::Ready);
        disk.stage = Stage::Failing;
        disk.exited(status, &log);
        let Stage::Exited(exit) = &disk.stage else {
            panic!("{:?}", disk.stage)
        };
        assert!(exit.failed);
        assert_eq!(exit.status, "exit status: 1");
        assert_eq!(exit.last_line, "raftkv: fsync of x failed");
    }

    #[test]
    fn a_tree_is_copied_whole_and_measured() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("wal")).unwrap();
        std::fs::write(from.join("wal/1.log"), [1u8; 300]).unwrap();
        std::fs::write(from.join("meta"), [2u8; 20]).unwrap();
        assert_eq!(tree_size(&from).unwrap(), 320);
        let to = dir.path().join("to");
        copy_tree(&from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("wal/1.log")).unwrap(), [1u8; 300]);
        assert_eq!(tree_size(&to).unwrap(), 320);
    }
}
