//! The local platform: the processes of a running `raftctl local`, reached
//! through its control socket in the data directory.

use std::path::PathBuf;
use std::time::Duration;

use super::{Grace, Platform, PodInfo};
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::fault::disk::{DiskFault, DiskState, DiskStep};
use crate::ctl::fault::{FaultKind, LinkEffect, LinkFault};
use crate::ctl::local::control::{self, Answer, Request};
use crate::ctl::local::data_dir;
use crate::ctl::local::links::LinkRule;
use crate::ctl::local::{clock, disk};

/// `raftctl local`'s own grace period before SIGKILL (its shutdown's).
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The `raftctl local` cluster whose data directory is `data_dir`.
#[derive(Debug, Clone)]
pub struct Local {
    pub data_dir: PathBuf,
}

/// A local node's pod name.
pub fn pod_name(id: u64) -> String {
    format!("node-{id}")
}

fn node_id(name: &str) -> Option<u64> {
    name.strip_prefix("node-")?.parse().ok()
}

impl Local {
    fn grace_ms(grace: Duration) -> u64 {
        u64::try_from(grace.as_millis()).unwrap_or(u64::MAX)
    }

    async fn ask(&self, request: Request, limit: Duration) -> Result<Answer, CtlError> {
        match control::ask(&self.data_dir, &request, limit).await {
            Ok(Answer::Error(e)) => Err(CtlError::error(e)),
            Ok(answer) => Ok(answer),
            Err(e) => Err(CtlError::new(Exit::Unreachable, e)),
        }
    }
}

impl Platform for Local {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn pods(&self) -> Result<Vec<PodInfo>, CtlError> {
        match self.ask(Request::Pods, Duration::from_secs(5)).await? {
            Answer::Pods(processes) => Ok(processes
                .into_iter()
                .map(|p| PodInfo {
                    name: pod_name(p.id),
                    id: p.id,
                    running: p.pid.is_some(),
                    endpoint: Some(p.client_addr),
                })
                .collect()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a pod list"
            ))),
        }
    }

    async fn delete_pod(&self, name: &str, grace: Grace) -> Result<(), CtlError> {
        let id = node_id(name).ok_or_else(|| {
            CtlError::new(
                Exit::BadInput,
                format!("{name:?} is not a local pod name (node-0, node-1, ...)"),
            )
        })?;
        let grace = match grace {
            Grace::Forced => Duration::ZERO,
            Grace::Graceful(g) => g.unwrap_or(DEFAULT_GRACE),
        };
        let request = Request::Delete {
            id,
            grace_ms: Local::grace_ms(grace),
        };
        match self.ask(request, grace + Duration::from_secs(15)).await? {
            Answer::Deleted { .. } => Ok(()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a deletion"
            ))),
        }
    }

    async fn start_pod(&self, id: u64) -> Result<(), CtlError> {
        match self
            .ask(Request::Start { id }, Duration::from_secs(15))
            .await?
        {
            Answer::Started { .. } => Ok(()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a start"
            ))),
        }
    }

    async fn stop_pod(&self, id: u64) -> Result<(), CtlError> {
        let request = Request::Stop {
            id,
            grace_ms: Local::grace_ms(DEFAULT_GRACE),
        };
        match self
            .ask(request, DEFAULT_GRACE + Duration::from_secs(15))
            .await?
        {
            Answer::Stopped { .. } => Ok(()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a stop"
            ))),
        }
    }

    async fn retained_data(&self, id: u64) -> Result<Option<String>, CtlError> {
        let dir = data_dir(&self.data_dir, id);
        let holds_anything = match std::fs::read_dir(&dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(CtlError::error(format!(
                    "cannot read {}: {e}",
                    dir.display()
                )));
            }
        };
        Ok(holds_anything.then(|| format!("directory {}", dir.display())))
    }

    async fn delete_data(&self, id: u64) -> Result<(), CtlError> {
        if self.pods().await?.iter().any(|p| p.id == id) {
            return Err(CtlError::error(format!(
                "node {id} is still supervised by raftctl local; its data directory is kept"
            )));
        }
        let dir = data_dir(&self.data_dir, id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CtlError::error(format!(
                "cannot delete {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Everything, but a skew only where libfaketime is installed, failing
    /// fsyncs only where libfiu's tools are, and a full volume only where
    /// this process can mount a tmpfs (the supervisor runs on this
    /// machine too, as the same user in the usual case).
    fn refuses(&self, fault: FaultKind) -> Option<String> {
        match fault {
            FaultKind::Skew { .. } => clock::library()
                .err()
                .map(|e| format!("the local platform cannot skew a node's clock: {e}")),
            FaultKind::Disk { fault, .. } => {
                let (able, what) = match fault {
                    DiskFault::Fsync => (disk::fiu_tools(), "fail a node's fsyncs"),
                    DiskFault::Full => (disk::can_mount(), "fill a node's volume"),
                };
                able.err()
                    .map(|e| format!("the local platform cannot {what}: {e}"))
            }
            _ => None,
        }
    }

    /// Through the supervisor, which restarts the node and fails its disk.
    async fn set_disk(
        &self,
        id: u64,
        step: DiskStep,
        restore_after: Duration,
    ) -> Result<DiskState, CtlError> {
        let request = Request::Disk {
            id,
            step,
            grace_ms: Local::grace_ms(DEFAULT_GRACE),
            restore_after_ms: Local::grace_ms(restore_after),
        };
        // Room to stop the node and copy its data to or from a volume.
        let limit = DEFAULT_GRACE + Duration::from_secs(30);
        match self.ask(request, limit).await? {
            Answer::Disk(state) => Ok(state),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a disk fault"
            ))),
        }
    }

    /// The supervisor restarts the node with libfaketime preloaded, or
    /// without it; gracefully, so that a leader hands over first.
    async fn set_clock(
        &self,
        id: u64,
        rate_ppm: Option<u32>,
        restore_after: Duration,
    ) -> Result<(), CtlError> {
        let request = Request::Clock {
            id,
            rate_ppm,
            grace_ms: Local::grace_ms(DEFAULT_GRACE),
            restore_after_ms: Local::grace_ms(restore_after),
        };
        match self
            .ask(request, DEFAULT_GRACE + Duration::from_secs(15))
            .await?
        {
            Answer::Clock { .. } => Ok(()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a clock change"
            ))),
        }
    }

    /// Through the supervisor's link proxies; the supervisor heals them
    /// after `length` by itself.
    async fn set_links(&self, faults: &[LinkFault], length: Duration) -> Result<(), CtlError> {
        let rules = faults
            .iter()
            .map(|f| match f.effect {
                LinkEffect::Lost => LinkRule::cut(f.from, f.to),
                LinkEffect::Slow { delay, jitter } => LinkRule::slow(f.from, f.to, delay, jitter),
            })
            .collect();
        let request = Request::Links {
            rules,
            heal_after_ms: Local::grace_ms(length),
        };
        match self.ask(request, Duration::from_secs(5)).await? {
            Answer::Links { .. } => Ok(()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a link fault"
            ))),
        }
    }

    async fn heal_links(&self) -> Result<(), CtlError> {
        match self.ask(Request::Heal, Duration::from_secs(5)).await? {
            Answer::Links { .. } => Ok(()),
            other => Err(CtlError::error(format!(
                "raftctl local answered {other:?} to a heal"
            ))),
        }
    }

    /// SIGSTOP, then SIGCONT after `length` (or when this future is
    /// dropped first).
    async fn pause_pod(&self, id: u64, length: Duration) -> Result<(), CtlError> {
        let pid = match self.ask(Request::Pods, Duration::from_secs(5)).await? {
            Answer::Pods(processes) => processes.iter().find(|p| p.id == id).and_then(|p| p.pid),
            other => {
                return Err(CtlError::error(format!(
                    "raftctl local answered {other:?} to a pod list"
                )));
            }
        };
        let pid = pid.ok_or_else(|| {
            CtlError::error(format!("{} is not running: nothing to pause", pod_name(id)))
        })?;
        let frozen = Frozen::stop(pid)?;
        tokio::time::sleep(length).await;
        frozen.resume()
    }
}

/// A process stopped with SIGSTOP; continued on `resume` or on drop, so
/// that no way out of a pause (an error, Ctrl-C) leaves a node frozen.
struct Frozen(Option<u32>);

impl Frozen {
    fn stop(pid: u32) -> Result<Frozen, CtlError> {
        signal(pid, libc::SIGSTOP)?;
        Ok(Frozen(Some(pid)))
    }

    fn resume(mut self) -> Result<(), CtlError> {
        match self.0.take() {
            Some(pid) => signal(pid, libc::SIGCONT),
            None => Ok(()),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = signal(pid, libc::SIGCONT);
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) -> Result<(), CtlError> {
    crate::ctl::local::send_signal(pid, sig)
        .map_err(|e| CtlError::error(format!("cannot signal process {pid}: {e}")))
}
