//! Watching a cluster's leadership while a test loads it: a probe that
//! samples every node's term and role, and the step-downs the nodes
//! logged for want of lease renewals (docs/node.md, "The lease under
//! load").

use super::cluster::Cluster;
use raftkv::client::{Client, ClientOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A sample of one node's view, by the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub node: usize,
    pub term: u64,
    pub role: String,
}

/// Samples every node's term and role every 100 ms until stopped, keeping
/// each change; `also` runs after each round of samples.
pub struct TermProbe {
    running: Arc<AtomicBool>,
    task: JoinHandle<Vec<Seen>>,
}

impl TermProbe {
    pub fn start(endpoints: Vec<String>, mut also: impl FnMut() + Send + 'static) -> TermProbe {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let task = tokio::spawn(async move {
            let opts = ClientOptions::default().with_timeout(Duration::from_millis(500));
            let probe = Client::lazy(endpoints.clone(), opts).unwrap();
            let mut seen = Vec::new();
            while flag.load(Ordering::Relaxed) {
                for (node, addr) in endpoints.iter().enumerate() {
                    if let Ok(s) = probe.status(addr).await {
                        let now = Seen {
                            node,
                            term: s.term,
                            role: s.role,
                        };
                        if seen.last() != Some(&now) {
                            seen.push(now);
                        }
                    }
                }
                also();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        });
        TermProbe { running, task }
    }

    /// Stops the probe; what it saw, in order.
    pub async fn stop(self) -> Vec<Seen> {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// The "lease not renewed" step-downs in every node's log, each prefixed
/// with its node.
pub fn lease_losses(c: &Cluster) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..c.nodes.len() {
        let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
        lines.extend(
            log.lines()
                .filter(|l| l.contains("lease not renewed"))
                .map(|l| format!("node {i}: {l}")),
        );
    }
    lines
}
