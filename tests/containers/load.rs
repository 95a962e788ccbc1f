//! A writer that runs while pods come and go: sequential writes of unique
//! keys, each remembered once acknowledged, with the time of every
//! acknowledgement. At the end every acknowledged key must hold its value
//! (no acknowledged write lost) and the longest pause between two
//! acknowledgements is the availability gap the test reports.

use super::sts::StatefulSet;
use crate::common::wait::{Later, wait_for};
use raftkv::client::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Acknowledged writes, in order: (key number, time of the ack).
#[derive(Default)]
struct Log {
    acked: Vec<(u64, Instant)>,
    /// Errors seen (a sample, for the report).
    errors: Vec<String>,
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
    tag: String,
}

pub struct Report {
    pub acked: usize,
    pub longest_gap: Duration,
    /// When the longest gap began, from the writer's start.
    pub gap_began: Duration,
    pub errors: Vec<String>,
}

fn key(tag: &str, n: u64) -> Vec<u8> {
    format!("{tag}/{n:08}").into_bytes()
}

fn value(n: u64) -> Vec<u8> {
    format!("value-{n}").into_bytes()
}

impl Writer {
    /// Starts writing through fresh clients of `sts`'s current pods (a
    /// failed write rebuilds the client, since pod IPs change).
    pub fn start(sts: Arc<StatefulSet>, tag: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let (stop2, log2, tag2) = (stop.clone(), log.clone(), tag.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut client: Option<Client> = None;
                let mut n = 0;
                while !stop2.load(Ordering::Relaxed) {
                    if client.is_none() {
                        client = sts.leader_client().await;
                    }
                    let Some(c) = client.as_ref() else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    match c.set(&key(&tag2, n), &value(n)).await {
                        Ok(()) => {
                            log2.lock().unwrap().acked.push((n, Instant::now()));
                            n += 1;
                        }
                        Err(e) => {
                            {
                                let mut l = log2.lock().unwrap();
                                if l.errors.len() < 20 {
                                    l.errors.push(e.to_string());
                                }
                            }
                            client = None;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        });
        Writer {
            stop,
            log,
            started: Instant::now(),
            thread: Some(thread),
            tag: tag.to_string(),
        }
    }

    /// Time since the writer started (to place events beside the gap).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.log.lock().unwrap().acked.len()
    }

    /// Waits until `more` further writes are acknowledged.
    pub fn wait_progress(&self, more: usize, limit: Duration) {
        let target = self.acked() + more;
        let what = Later(|| {
            format!(
                "{target} acknowledged writes (writes stalled at {}; errors: {:?})",
                self.acked(),
                self.log.lock().unwrap().errors
            )
        });
        wait_for(what, limit, || (self.acked() >= target).then_some(()));
    }

    /// Stops the writing thread (which holds the StatefulSet).
    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The writes acknowledged before `at` (a backup taken from then on
    /// holds them all).
    pub fn acked_before(&self, at: Instant) -> Vec<u64> {
        let log = self.log.lock().unwrap();
        log.acked
            .iter()
            .filter(|(_, t)| *t < at)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Stops writing, then checks that every acknowledged write is there.
    pub fn finish(mut self, sts: &StatefulSet) -> Report {
        self.halt();
        let log = self.log.lock().unwrap();
        let mut gap = Duration::ZERO;
        let mut gap_began = Duration::ZERO;
        let mut last = self.started;
        for (_, at) in &log.acked {
            if at.duration_since(last) > gap {
                gap = at.duration_since(last);
                gap_began = last.duration_since(self.started);
            }
            last = *at;
        }
        let acked: Vec<u64> = log.acked.iter().map(|(n, _)| *n).collect();
        verify(sts, &self.tag, &acked);
        Report {
            acked: acked.len(),
            longest_gap: gap,
            gap_began,
            errors: log.errors.clone(),
        }
    }
}

impl Drop for Writer {
    /// A test that fails while writing still releases its StatefulSet, so
    /// the containers, volumes and network are removed.
    fn drop(&mut self) {
        self.halt();
    }
}

/// Reads every acknowledged key back (linearizable reads through the
/// leader) and fails on the first one missing or wrong.
pub fn verify(sts: &StatefulSet, tag: &str, acked: &[u64]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = sts.leader_client().await;
        for &n in acked {
            let mut tries = 0;
            loop {
                let answer = match &client {
                    Some(c) => c.get(&key(tag, n)).await.map_err(|e| e.to_string()),
                    None => Err("no leader".to_string()),
                };
                match answer {
                    Ok(got) => {
                        assert_eq!(
                            got.as_deref(),
                            Some(&value(n)[..]),
                            "acknowledged write {n} of {} is lost",
                            acked.len()
                        );
                        break;
                    }
                    Err(e) if tries < 20 => {
                        tries += 1;
                        eprintln!("verify: read {n}: {e}; retrying");
                        client = sts.leader_client().await;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => panic!("verify: read {n}: {e}"),
                }
            }
        }
    });
}
