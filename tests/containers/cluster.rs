//! What the container tests share: the image (tests/common/image.rs),
//! a limit on how many tests run containers at once, and questions to the cluster (who leads,
//! who votes) asked through the Rust client.

use super::pod::Secrets;
use super::sts::StatefulSet;
use crate::common::image::image;
use crate::common::wait::{Later, wait_for};
use raftkv::client::Client;
use raftkv::pb;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Tests running containers at once: two cores shared with other work, and
/// Raft timeouts of a few hundred milliseconds.
const SLOTS: usize = 2;

/// A slot to run containers in; released on drop.
pub struct Slot;

pub fn slot() -> Slot {
    let (lock, cv) = slots();
    let mut used = lock.lock().unwrap();
    while *used >= SLOTS {
        used = cv.wait(used).unwrap();
    }
    *used += 1;
    Slot
}

fn slots() -> &'static (Mutex<usize>, Condvar) {
    static S: OnceLock<(Mutex<usize>, Condvar)> = OnceLock::new();
    S.get_or_init(|| (Mutex::new(0), Condvar::new()))
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = slots();
        *lock.lock().unwrap() -= 1;
        cv.notify_one();
    }
}

/// One test's cluster: its slot, its StatefulSet, a runtime for client calls.
pub struct Env {
    pub sts: Arc<StatefulSet>,
    pub rt: tokio::runtime::Runtime,
    _slot: Slot,
}

impl Env {
    /// `None` when Docker is absent (the test then returns, skipped).
    pub fn new(test: &str) -> Option<Env> {
        Env::with_values(test, &[], &Secrets::new())
    }

    /// As [`Self::new`], the chart rendered with `sets`, its Secret
    /// volumes mounted from `secrets`.
    pub fn with_values(test: &str, sets: &[&str], secrets: &Secrets) -> Option<Env> {
        let image = image()?;
        let slot = slot();
        Some(Env {
            sts: Arc::new(StatefulSet::with_values(test, &image, sets, secrets)),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            _slot: slot,
        })
    }

    /// Starts pods `0..n` and waits until all are ready.
    pub fn start_ready(&self, n: u64) {
        for i in 0..n {
            self.sts.start(i);
        }
        for i in 0..n {
            self.sts.wait_ready(i, Duration::from_secs(60));
        }
    }

    pub fn client(&self) -> Client {
        self.sts.client()
    }

    /// The members as the leader reports them, retried until one answers.
    pub fn members(&self) -> pb::MembersResponse {
        self.retry("members", |c| async move { c.members().await })
    }

    /// The current leader's id.
    pub fn leader(&self) -> u64 {
        wait_for("a leader", Duration::from_secs(30), || {
            self.members().leader
        })
    }

    /// Waits until the voters are exactly `voters` and nobody is a learner.
    pub fn wait_voters(&self, voters: &[u64], limit: Duration) {
        wait_for(format!("voters {voters:?}"), limit, || {
            let m = self.members();
            let v: Vec<u64> = m.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
            (v == voters && m.members.len() == voters.len()).then_some(())
        })
    }

    /// Runs a call on a client of the leader until it succeeds (30 s).
    pub fn retry<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, raftkv::client::ClientError>>,
    {
        let last = std::cell::RefCell::new(String::new());
        let why = Later(|| format!("{what}: {}", last.borrow()));
        wait_for(why, Duration::from_secs(30), || {
            let answer = self.rt.block_on(async {
                match self.sts.leader_client().await {
                    Some(c) => f(c).await.map_err(|e| e.to_string()),
                    None => Err("no pod says it leads".to_string()),
                }
            });
            answer.map_err(|e| *last.borrow_mut() = e).ok()
        })
    }

    /// One write and its read back.
    pub fn write_read(&self, key: &str, value: &str) {
        self.retry("set", |c| async move {
            c.set(key.as_bytes(), value.as_bytes()).await
        });
        let got = self.retry("get", |c| async move { c.get(key.as_bytes()).await });
        assert_eq!(got.as_deref(), Some(value.as_bytes()));
    }
}
