//! The control socket of `raftctl local`: how another raftctl (delete-pod,
//! chaos, scale) lists the local cluster's processes, deletes one, and
//! starts or stops nodes for good (scaling). The supervisor
//! is the local cluster's "StatefulSet controller": it alone owns the child
//! processes, so it alone signals them, waits for them and starts them again
//! — no other process races it for a pid.
//!
//! It also sets the faults of the link proxies (`links`) for `raftctl
//! chaos`: the supervisor owns the proxies, and a fault set here heals by
//! itself after its length even if the asker dies.
//!
//! Protocol: one JSON request line, one JSON answer line, then close.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use tokio::time::Instant;

use super::clock::{self, Skew};
use super::links::{LinkRule, Links};
use super::nodes::Placement;
use super::procs::LocalCluster;
use crate::ctl::fault::disk::{DiskState, DiskStep};

/// The socket's file name inside the data directory.
pub const SOCKET: &str = "raftctl-local.sock";

/// How long a request may take to arrive once connected.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// The socket of the local cluster whose data directory is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Pods,
    /// Stop node `id` (SIGKILL if `grace_ms` is 0, else SIGTERM and SIGKILL
    /// after `grace_ms`), then start it again.
    Delete {
        id: u64,
        grace_ms: u64,
    },
    /// Start node `id` and supervise it from now on (`raftctl scale` up):
    /// it joins the cluster by itself (`--auto-join`). Already running: done.
    Start {
        id: u64,
    },
    /// Stop node `id` for good (SIGTERM, SIGKILL after `grace_ms`) and
    /// supervise it no more (`raftctl scale` down, once its member is
    /// removed). Its data directory stays. Not supervised: done.
    Stop {
        id: u64,
        grace_ms: u64,
    },
    /// Every link passes except those of `rules`, until `heal_after_ms`
    /// has passed or a `heal` comes.
    Links {
        rules: Vec<LinkRule>,
        heal_after_ms: u64,
    },
    /// Every link passes.
    Heal,
    /// Restart node `id` (SIGTERM, SIGKILL after `grace_ms`) on a clock
    /// running at `rate_ppm` millionths of real time (libfaketime), or on
    /// the real clock (`rate_ppm` absent). A skewed node is restarted on
    /// the real clock by the supervisor itself after `restore_after_ms`.
    Clock {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_ppm: Option<u32>,
        grace_ms: u64,
        #[serde(default)]
        restore_after_ms: u64,
    },
    /// One step of a disk fault on node `id` (`local::disk`): restarts
    /// stop it with SIGTERM, SIGKILL after `grace_ms`; a prepared node is
    /// restored by the supervisor itself after `restore_after_ms`.
    Disk {
        id: u64,
        step: DiskStep,
        grace_ms: u64,
        #[serde(default)]
        restore_after_ms: u64,
    },
}

/// One process of the local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub id: u64,
    pub pid: Option<u32>,
    pub client_addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    Pods(Vec<Process>),
    /// The node was stopped (`killed`: it needed SIGKILL) and started again.
    Deleted {
        killed: bool,
        pid: Option<u32>,
    },
    /// The node runs (`pid`), started now or already running.
    Started {
        pid: Option<u32>,
    },
    /// The node is no longer supervised (`killed`: it needed SIGKILL).
    Stopped {
        killed: bool,
    },
    /// Node `id` runs again (`pid`) on the clock asked for.
    Clock {
        pid: Option<u32>,
        rate_ppm: Option<u32>,
    },
    /// Node `id`'s disk after a disk step.
    Disk(DiskState),
    /// The link faults are set (none after a heal); `proxied` lists every
    /// link with a proxy, (from, to).
    Links {
        proxied: Vec<(u64, u64)>,
    },
    Error(String),
}

/// Binds the socket, refusing if a live supervisor already answers on it
/// (two supervisors on one data directory would corrupt it).
pub async fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if UnixStream::connect(&path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "another raftctl local already runs on {} (its socket {} answers)",
                data_dir.display(),
                path.display()
            ),
        ));
    }
    // A socket left by a supervisor that was killed.
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path)
}

/// Serves one connection: reads its request, acts on `cluster`, answers.
pub async fn serve(
    stream: UnixStream,
    cluster: &mut LocalCluster,
    placement: &Placement,
    links: Option<&mut Links>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(READ_LIMIT, BufReader::new(read).read_line(&mut line)).await;
    let answer = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(request, cluster, placement, links).await,
            Err(e) => Answer::Error(format!("bad request: {e}")),
        },
        Ok(Err(e)) => Answer::Error(format!("cannot read the request: {e}")),
        Err(_) => return,
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_default();
    text.push('\n');
    // The asker may have given up; nothing to do then.
    let _ = write.write_all(text.as_bytes()).await;
}

async fn handle(
    request: Request,
    cluster: &mut LocalCluster,
    placement: &Placement,
    links: Option<&mut Links>,
) -> Answer {
    match request {
        Request::Links {
            rules,
            heal_after_ms,
        } => {
            let Some(links) = links else {
                return Answer::Error(
                    "this local cluster has no link proxies (a single node has no links)".into(),
                );
            };
            let heal_after = Duration::from_millis(heal_after_ms);
            match links.set(&rules, heal_after) {
                Ok(()) => {
                    let names: Vec<String> = rules
                        .iter()
                        .map(|r| format!("{}->{} {:?}", r.from, r.to, r.forward))
                        .collect();
                    eprintln!(
                        "links on request for {}ms: {}",
                        heal_after_ms,
                        names.join(", ")
                    );
                    Answer::Links {
                        proxied: links.proxied(),
                    }
                }
                Err(e) => Answer::Error(e),
            }
        }
        Request::Heal => match links {
            Some(links) => {
                if links.heal_at().is_some() {
                    eprintln!("links healed on request");
                }
                links.heal();
                Answer::Links {
                    proxied: links.proxied(),
                }
            }
            None => Answer::Links {
                proxied: Vec::new(),
            },
        },
        Request::Pods => Answer::Pods(
            cluster
                .nodes()
                .iter()
                .enumerate()
                .map(|(index, node)| Process {
                    id: node.id,
                    pid: cluster.pid(index),
                    client_addr: node.client_addr.clone(),
                })
                .collect(),
        ),
        Request::Delete { id, grace_ms } => {
            let Some(index) = cluster.index_of(id) else {
                return Answer::Error(format!("the local cluster has no node {id}"));
            };
            let killed = cluster
                .stop_node(index, Duration::from_millis(grace_ms))
                .await;
            eprintln!(
                "node {id} deleted on request ({}); starting it again",
                if grace_ms == 0 {
                    "SIGKILL".to_string()
                } else if killed {
                    format!("SIGTERM, SIGKILL after {grace_ms} ms")
                } else {
                    "SIGTERM".to_string()
                }
            );
            match cluster.spawn(index) {
                Ok(()) => Answer::Deleted {
                    killed,
                    pid: cluster.pid(index),
                },
                Err(e) => Answer::Error(format!("node {id} stopped but did not start: {e}")),
            }
        }
        Request::Start { id } => start(cluster, placement, id),
        Request::Clock {
            id,
            rate_ppm,
            grace_ms,
            restore_after_ms,
        } => {
            let skew = match rate_ppm {
                None => None,
                Some(rate) if !crate::ctl::fault::SKEW_RATES_PPM.contains(&rate) => {
                    return Answer::Error(format!(
                        "a clock rate must be within [0.1, 10] times real time, not {}",
                        clock::rate_text(rate)
                    ));
                }
                Some(rate_ppm) => match clock::library() {
                    Ok(library) => Some(Skew {
                        rate_ppm,
                        library,
                        until: Instant::now() + Duration::from_millis(restore_after_ms),
                    }),
                    Err(e) => return Answer::Error(e),
                },
            };
            reclock(cluster, id, skew, Duration::from_millis(grace_ms)).await
        }
        Request::Disk {
            id,
            step,
            grace_ms,
            restore_after_ms,
        } => {
            super::disk::step(
                cluster,
                id,
                step,
                Duration::from_millis(grace_ms),
                Duration::from_millis(restore_after_ms),
            )
            .await
        }
        Request::Stop { id, grace_ms } => {
            let Some(index) = cluster.index_of(id) else {
                return Answer::Stopped { killed: false };
            };
            let killed = cluster
                .stop_node(index, Duration::from_millis(grace_ms))
                .await;
            cluster.remove(index);
            eprintln!("node {id} stopped for good on request (scale down); its data stays");
            match super::save_nodes(cluster, placement) {
                Ok(()) => Answer::Stopped { killed },
                Err(e) => Answer::Error(format!("node {id} stopped, but {e}")),
            }
        }
    }
}

/// Restarts node `id` on `skew`'s clock (None: the real one), stopping it
/// with `grace` first; also how the supervisor ends a skew that is due.
pub async fn reclock(
    cluster: &mut LocalCluster,
    id: u64,
    skew: Option<Skew>,
    grace: Duration,
) -> Answer {
    let Some(index) = cluster.index_of(id) else {
        return Answer::Error(format!("the local cluster has no node {id}"));
    };
    cluster.stop_node(index, grace).await;
    let rate_ppm = skew.as_ref().map(|s| s.rate_ppm);
    cluster.set_skew(index, skew);
    eprintln!(
        "node {id} restarted on request on {}",
        match rate_ppm {
            Some(rate) => format!("a clock at {} of real time", clock::rate_text(rate)),
            None => "the real clock".into(),
        }
    );
    match cluster.spawn(index) {
        Ok(()) => Answer::Clock {
            pid: cluster.pid(index),
            rate_ppm,
        },
        Err(e) => Answer::Error(format!("node {id} stopped but did not start: {e}")),
    }
}

/// Starts node `id` (again, or for the first time as a joining node).
fn start(cluster: &mut LocalCluster, placement: &Placement, id: u64) -> Answer {
    if let Some(index) = cluster.index_of(id) {
        if !cluster.is_running(index)
            && let Err(e) = cluster.spawn(index)
        {
            return Answer::Error(format!("node {id} did not start: {e}"));
        }
        return Answer::Started {
            pid: cluster.pid(index),
        };
    }
    let mut node = match placement.node(id) {
        Ok(node) => node,
        Err(e) => return Answer::Error(e),
    };
    node.joins = true;
    if let Err(e) = super::ports_free(std::slice::from_ref(&node)) {
        return Answer::Error(e.message);
    }
    if let Err(e) = cluster.add(node) {
        return Answer::Error(format!("node {id} did not start: {e}"));
    }
    let index = cluster.nodes().len() - 1;
    let pid = cluster.pid(index);
    eprintln!(
        "node {id} started on request (scale up): pid {}, joining the cluster",
        pid.map_or("-".into(), |p| p.to_string())
    );
    match super::save_nodes(cluster, placement) {
        Ok(()) => Answer::Started { pid },
        Err(e) => Answer::Error(format!("node {id} started, but {e}")),
    }
}

/// Sends `request` to the supervisor of `data_dir` and waits up to `limit`.
pub async fn ask(data_dir: &Path, request: &Request, limit: Duration) -> Result<Answer, String> {
    let path = socket_path(data_dir);
    let exchange = async {
        let mut stream = UnixStream::connect(&path).await.map_err(|e| {
            format!(
                "no raftctl local runs on {} ({}: {e}); start one with `raftctl local --data-dir {}`",
                data_dir.display(),
                path.display(),
                data_dir.display()
            )
        })?;
        let mut text = serde_json::to_string(request).map_err(|e| e.to_string())?;
        text.push('\n');
        stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("cannot talk to raftctl local: {e}"))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("cannot read raftctl local's answer: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("raftctl local answered {line:?}: {e}"))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("raftctl local did not answer within {}s", limit.as_secs()))?
}
