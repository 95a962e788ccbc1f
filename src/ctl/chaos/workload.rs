//! The checked workload of `raftctl chaos`: concurrent clients run SET, GET,
//! INCR and CAS on a few registers and INCR/GET on one counter, and every
//! operation's invocation and completion is recorded for the checkers.
//!
//! Recording rules (those of the linearizability checker): a write that
//! failed without a definite answer (timeout, unreachable, no leader) may
//! still take effect, so it is kept with an unknown completion; a read that
//! failed has no effect and is dropped; a refused command changed nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::check::linearizability::{Op, OpKind};
use crate::client::{Client, ClientError, ClientOptions};

/// The shape of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent clients, each with its own connection and session.
    pub clients: usize,
    /// Registers (the counter comes on top).
    pub registers: usize,
    /// Pause between one client's operations (keeps histories checkable).
    pub pause: Duration,
    /// Key prefix, unique per run so every key starts absent.
    pub prefix: String,
    /// Deadline of one operation, retries included.
    pub op_timeout: Duration,
    /// TLS to the client port (`raftctl --cacert ...`).
    pub tls: Option<crate::tls::ClientTls>,
}

impl WorkloadConfig {
    pub fn register(&self, i: usize) -> String {
        format!("{}/r{i}", self.prefix)
    }

    pub fn counter(&self) -> String {
        format!("{}/counter", self.prefix)
    }

    /// Every key of the run, registers then the counter.
    pub fn keys(&self) -> Vec<String> {
        (0..self.registers)
            .map(|i| self.register(i))
            .chain([self.counter()])
            .collect()
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// Failed; the word names the client error kind.
    Failed(&'static str),
}

/// The shared log of a run: the history, each op's outcome, the instants of
/// successful completions.
#[derive(Debug, Default)]
pub struct Recording {
    pub history: Vec<Op>,
    /// Failed operations by error kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Completion instants (ns since the run began) of successful operations.
    pub successes: Vec<u64>,
    pub total: u64,
}

/// The error kind of a client error, as the report counts it.
pub fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Unreachable { .. } => "unreachable",
        ClientError::NoLeader(_) => "no-leader",
        ClientError::Timeout { .. } => "timeout",
        ClientError::OutcomeUnknown(_) => "outcome-unknown",
        ClientError::Rejected(_) => "rejected",
        ClientError::InvalidArgument(_) => "invalid-argument",
        ClientError::LearnerBehind { .. } => "learner-behind",
        ClientError::Other(_) => "other",
    }
}

/// A running workload: its clients stop when [`Workload::stop`] is called.
pub struct Workload {
    pub config: WorkloadConfig,
    epoch: Instant,
    recording: Arc<Mutex<Recording>>,
    running: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts `config.clients` clients against `endpoints`; times are
    /// measured from `epoch`.
    pub fn start(
        config: WorkloadConfig,
        endpoints: Vec<String>,
        epoch: Instant,
    ) -> Result<Workload, ClientError> {
        let recording = Arc::new(Mutex::new(Recording::default()));
        let running = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicU64::new(0));
        let options = ClientOptions {
            tls: config.tls.clone(),
            ..ClientOptions::default()
        }
        .with_timeout(config.op_timeout);
        let mut tasks = Vec::new();
        for worker in 0..config.clients {
            let client = Client::lazy(endpoints.clone(), options.clone())?;
            let ctx = Worker {
                id: worker as u64,
                client,
                config: config.clone(),
                epoch,
                recording: recording.clone(),
                running: running.clone(),
                done: done.clone(),
            };
            tasks.push(tokio::spawn(ctx.run()));
        }
        Ok(Workload {
            config,
            epoch,
            recording,
            running,
            done,
            tasks,
        })
    }

    /// Operations completed so far (any outcome).
    pub fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        nanos_since(self.epoch)
    }

    /// Stops the clients (each finishes its operation in flight) and
    /// returns what was recorded.
    pub async fn stop(self) -> Recording {
        self.running.store(false, Ordering::Relaxed);
        for task in self.tasks {
            // A panicking client loses only its own in-flight record.
            let _ = task.await;
        }
        std::mem::take(&mut *self.recording.lock().await)
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

struct Worker {
    id: u64,
    client: Client,
    config: WorkloadConfig,
    epoch: Instant,
    recording: Arc<Mutex<Recording>>,
    running: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

/// One operation to run: the history entry before its result is known.
enum Planned {
    Get(String),
    Set(String, i64),
    Incr(String),
    Cas(String, Option<i64>, i64),
}

impl Worker {
    async fn run(self) {
        let mut rng = SmallRng::seed_from_u64(rand::rng().random::<u64>() ^ self.id);
        // The last value this client saw per register: CAS expects it.
        let mut seen: BTreeMap<String, Option<i64>> = BTreeMap::new();
        let mut seq: i64 = 0;
        while self.running.load(Ordering::Relaxed) {
            seq += 1;
            let planned = self.plan(&mut rng, seq, &seen);
            let (op, outcome) = self.execute(planned, &mut seen).await;
            let mut rec = self.recording.lock().await;
            rec.total += 1;
            match outcome {
                Outcome::Ok => rec
                    .successes
                    .push(op.as_ref().and_then(|o| o.ret).unwrap_or(0)),
                Outcome::Failed(kind) => *rec.errors.entry(kind).or_default() += 1,
            }
            if let Some(op) = op {
                rec.history.push(op);
            }
            drop(rec);
            self.done.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.config.pause).await;
        }
    }

    /// Draws the next operation. SET values are unique multiples of 1000 so
    /// a value names its writer and INCRs on registers never collide with it.
    fn plan(&self, rng: &mut SmallRng, seq: i64, seen: &BTreeMap<String, Option<i64>>) -> Planned {
        let register = self
            .config
            .register(rng.random_range(0..self.config.registers));
        let unique = (self.id as i64 + 1) * 1_000_000_000_000 + seq * 1000;
        match rng.random_range(0..100) {
            0..30 => Planned::Get(register),
            30..55 => Planned::Set(register, unique),
            55..70 => {
                let expected = seen.get(&register).copied().flatten();
                Planned::Cas(register, expected, unique)
            }
            70..80 => Planned::Incr(register),
            80..95 => Planned::Incr(self.config.counter()),
            _ => Planned::Get(self.config.counter()),
        }
    }

    /// Runs `planned`; its history entry (if it belongs in the history) and outcome.
    async fn execute(
        &self,
        planned: Planned,
        seen: &mut BTreeMap<String, Option<i64>>,
    ) -> (Option<Op>, Outcome) {
        let call = nanos_since(self.epoch);
        let (key, kind, result) = match planned {
            Planned::Get(key) => {
                let r = self.client.get(key.as_bytes()).await;
                let value = r.as_ref().ok().map(|v| v.as_ref().map(|b| text(b)));
                if let Some(v) = &value {
                    seen.insert(key.clone(), v.as_deref().and_then(|s| s.parse().ok()));
                }
                (key, OpKind::Get { result: value }, r.map(drop))
            }
            Planned::Set(key, value) => {
                let r = self
                    .client
                    .set(key.as_bytes(), value.to_string().as_bytes())
                    .await;
                let kind = OpKind::Set {
                    value: value.to_string(),
                };
                (key, kind, r)
            }
            Planned::Incr(key) => {
                let r = self.client.incr(key.as_bytes()).await;
                let kind = OpKind::Incr {
                    result: r.as_ref().ok().copied(),
                };
                (key, kind, r.map(drop))
            }
            Planned::Cas(key, expected, new) => {
                let e = expected.map(|v| v.to_string());
                let r = self
                    .client
                    .cas(
                        key.as_bytes(),
                        e.as_deref().map(str::as_bytes),
                        new.to_string().as_bytes(),
                    )
                    .await;
                if let Ok(outcome) = &r {
                    let current = outcome.current.as_ref().map(|b| text(b));
                    seen.insert(key.clone(), current.and_then(|s| s.parse().ok()));
                }
                let kind = OpKind::Cas {
                    expected: e,
                    new: new.to_string(),
                    result: r.as_ref().ok().map(|o| o.swapped),
                };
                (key, kind, r.map(drop))
            }
        };
        let ret = nanos_since(self.epoch);
        let op = |ret| Op {
            client: self.id,
            key: key.clone(),
            kind: kind.clone(),
            call,
            ret,
            at: None,
        };
        match result {
            Ok(()) => (Some(op(Some(ret))), Outcome::Ok),
            Err(e) => {
                let kind_word = error_kind(&e);
                let definite = matches!(
                    e,
                    ClientError::Rejected(_) | ClientError::InvalidArgument(_)
                );
                let is_read = matches!(kind, OpKind::Get { .. });
                let entry = (!definite && !is_read).then(|| op(None));
                (entry, Outcome::Failed(kind_word))
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads every key of `config` once the faults are over, retrying until
/// `limit`: the final state, recorded as ordinary reads (client `u64::MAX`).
pub async fn final_reads(
    config: &WorkloadConfig,
    endpoints: Vec<String>,
    epoch: Instant,
    limit: Duration,
) -> Result<Vec<Op>, ClientError> {
    let options = ClientOptions {
        tls: config.tls.clone(),
        ..ClientOptions::default()
    };
    let client = Client::lazy(endpoints, options.with_timeout(limit))?;
    let mut reads = Vec::new();
    for key in config.keys() {
        let call = nanos_since(epoch);
        let value = client.get(key.as_bytes()).await?;
        reads.push(Op {
            client: u64::MAX,
            key,
            kind: OpKind::Get {
                result: Some(value.map(|b| text(&b))),
            },
            call,
            ret: Some(nanos_since(epoch)),
            at: None,
        });
    }
    Ok(reads)
}
