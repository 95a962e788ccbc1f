//! `raftctl bench failover`: how long writes stop when the leader of a
//! `raftctl local` cluster dies (docs/performance.md, "Failover").
//!
//! Each trial: wait until every node runs and agrees on a leader that holds
//! its lease; write at a fixed rate (open loop: a write starts every 1/rate
//! seconds whatever the others do, each with its own deadline); signal the
//! leader's process (SIGKILL, or SIGTERM for a graceful hand-off), found
//! through the supervisor's control socket as `raftctl delete-pod
//! --platform local` finds it; keep writing; then have the supervisor start
//! the node again. The figure of a trial is its longest write gap: the
//! longest time between two consecutive acknowledgements, from a second
//! before the signal to the end of the observation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::time::Instant;

use crate::client::{Client, ClientOptions};
use crate::ctl::cli::Output;
use crate::ctl::duration::parse_duration;
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::local::control::{self, Answer, Request};
use crate::ctl::output::print_structured;
use crate::pb;

/// The flags of `raftctl bench failover` (ignored by the other workloads).
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// failover: how many times the leader is signalled (one trial each).
    #[arg(long, default_value_t = 5)]
    pub trials: u32,
    /// failover: the signal sent to the leader: kill (SIGKILL, a crash) or
    /// term (SIGTERM, a graceful stop that hands leadership over).
    #[arg(long, value_enum, default_value_t = KillSignal::Kill)]
    pub signal: KillSignal,
    /// failover: a write not acknowledged within this long (retries
    /// included) counts as failed.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// failover: how long writes run before the signal.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// failover: how long writes run after the signal.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub observe: Duration,
    /// failover, and server CPU of the other workloads: data directory of
    /// the `raftctl local` cluster (its supervisor gives the nodes' pids).
    #[arg(long, default_value = "./raftkv-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KillSignal {
    Kill,
    Term,
}

impl KillSignal {
    fn number(self) -> libc::c_int {
        match self {
            KillSignal::Kill => libc::SIGKILL,
            KillSignal::Term => libc::SIGTERM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KillSignal::Kill => "SIGKILL",
            KillSignal::Term => "SIGTERM",
        }
    }
}

/// One trial, as printed.
#[derive(Debug, Serialize, PartialEq)]
pub struct Trial {
    pub trial: u32,
    /// The node signalled (the leader before).
    pub old_leader: u64,
    /// The leader at the end of the observation.
    pub new_leader: Option<u64>,
    pub longest_gap_ms: f64,
    /// Writes started in the trial that failed (an error, or no answer
    /// within the deadline).
    pub failed_writes: u64,
    pub writes: u64,
    /// The first failure's message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Minimum, median and maximum over the trials, in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            };
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            min: v[0],
            median,
            max: v[n - 1],
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    pub signal: KillSignal,
    pub rate: u32,
    pub deadline_ms: f64,
    pub trials: Vec<Trial>,
    pub longest_gap_ms: Spread,
    pub failed_writes: u64,
    pub writes: u64,
}

/// One write: when it started, when it ended, and how.
#[derive(Debug, Clone)]
struct Write {
    started: Instant,
    ended: Instant,
    error: Option<String>,
}

/// Writes per second when `--rate` is not given.
pub const DEFAULT_RATE: u32 = 200;

pub async fn run(
    args: &FailoverArgs,
    rate: u32,
    endpoints: Vec<String>,
    options: ClientOptions,
    output: Output,
) -> Result<(), CtlError> {
    if args.trials == 0 || rate == 0 {
        return Err(CtlError::new(
            Exit::BadInput,
            "--trials and --rate must be at least 1",
        ));
    }
    // Retries come quickly so that what is measured is the cluster, not
    // the client's backoff; the deadline is the whole budget of a write.
    let options = ClientOptions {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(25),
        ..options.with_timeout(args.deadline)
    };
    let client = Client::connect(endpoints, options).await?;
    let mut trials = Vec::new();
    for trial in 1..=args.trials {
        let t = one_trial(args, rate, &client, trial).await?;
        eprintln!(
            "trial {trial}: {} node {} -> leader {}: longest write gap {:.1}ms, {} of {} writes failed",
            args.signal.name(),
            t.old_leader,
            t.new_leader.map_or("none".into(), |l| format!("node {l}")),
            t.longest_gap_ms,
            t.failed_writes,
            t.writes
        );
        trials.push(t);
    }
    let gaps: Vec<f64> = trials.iter().map(|t| t.longest_gap_ms).collect();
    let report = Report {
        signal: args.signal,
        rate,
        deadline_ms: args.deadline.as_secs_f64() * 1000.0,
        longest_gap_ms: Spread::of(&gaps),
        failed_writes: trials.iter().map(|t| t.failed_writes).sum(),
        writes: trials.iter().map(|t| t.writes).sum(),
        trials,
    };
    match output {
        Output::Table => print!("{}", render(&report)),
        _ => print_structured(output, &report)?,
    }
    Ok(())
}

async fn one_trial(
    args: &FailoverArgs,
    rate: u32,
    client: &Client,
    trial: u32,
) -> Result<Trial, CtlError> {
    let (leader, pid) = settled_leader(args, client).await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_at_rate(
        client.clone(),
        rate,
        trial,
        Arc::clone(&stop),
        Arc::clone(&log),
    ));
    let from = Instant::now();
    tokio::time::sleep(args.warmup).await;
    crate::ctl::local::send_signal(pid, args.signal.number())
        .map_err(|e| CtlError::error(format!("cannot signal node {leader} (pid {pid}): {e}")))?;
    tokio::time::sleep(args.observe).await;
    let to = Instant::now();
    stop.store(true, Ordering::Relaxed);
    writer
        .await
        .map_err(|e| CtlError::error(format!("the writer failed: {e}")))?;
    let writes = log.lock().map(|w| w.clone()).unwrap_or_default();
    let new_leader = current_leader(client).await.map(|s| s.id);
    restart(args, leader, pid).await?;
    let in_trial: Vec<&Write> = writes.iter().filter(|w| w.started < to).collect();
    let failed: Vec<&&Write> = in_trial.iter().filter(|w| w.error.is_some()).collect();
    Ok(Trial {
        trial,
        old_leader: leader,
        new_leader,
        longest_gap_ms: longest_gap(&writes, from, to).as_secs_f64() * 1000.0,
        failed_writes: failed.len() as u64,
        writes: in_trial.len() as u64,
        first_error: failed.first().and_then(|w| w.error.clone()),
    })
}

/// Starts a write every 1/rate seconds until `stop`; waits for the last.
async fn write_at_rate(
    client: Client,
    rate: u32,
    trial: u32,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Write>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let value = Bytes::from(vec![b'x'; 100]);
    let mut writes = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let key = format!("failover-{trial}-{}", n % 1000);
        let (client, log, value) = (client.clone(), Arc::clone(&log), value.clone());
        writes.spawn(async move {
            let started = Instant::now();
            let result = client.set(key.as_bytes(), &value).await;
            let w = Write {
                started,
                ended: Instant::now(),
                error: result.err().map(|e| e.to_string()),
            };
            if let Ok(mut log) = log.lock() {
                log.push(w);
            }
        });
    }
    while writes.join_next().await.is_some() {}
}

/// The longest time in [from, to] without an acknowledged write: between
/// two consecutive acknowledgements, or from the last one to `to`.
fn longest_gap(writes: &[Write], from: Instant, to: Instant) -> Duration {
    let mut acks: Vec<Instant> = writes
        .iter()
        .filter(|w| w.error.is_none() && w.ended >= from && w.ended <= to)
        .map(|w| w.ended)
        .collect();
    acks.sort();
    let mut longest = Duration::ZERO;
    let mut last = match acks.first() {
        Some(first) => *first,
        None => return to - from,
    };
    for at in acks.iter().skip(1).chain(std::iter::once(&to)) {
        longest = longest.max(at.saturating_duration_since(last));
        last = *at;
    }
    longest
}

/// The leader, if a node says it leads and holds its lease.
async fn current_leader(client: &Client) -> Option<pb::StatusResponse> {
    client
        .status_all()
        .await
        .into_iter()
        .filter_map(|(_, s)| s.ok())
        .find(|s| s.role == "leader" && s.lease_remaining_seconds > 0.0)
}

/// Waits (up to 60 s) until every node of the local cluster runs and
/// answers, all name the same leader, and it holds its lease; returns its
/// id and pid (the supervisor's pid of it, checked against the node's).
async fn settled_leader(args: &FailoverArgs, client: &Client) -> Result<(u64, u32), CtlError> {
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut why = String::new();
    while Instant::now() < give_up {
        match settled_once(args, client).await {
            Ok(found) => {
                // Settled twice in a row, 200 ms apart: no election under way.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if settled_once(args, client).await.ok() == Some(found) {
                    return Ok(found);
                }
            }
            Err(e) => why = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CtlError::error(format!(
        "the local cluster did not settle within 60 s: {why}"
    )))
}

async fn settled_once(args: &FailoverArgs, client: &Client) -> Result<(u64, u32), String> {
    let pods = pods(args).await?;
    if let Some(p) = pods.iter().find(|p| p.pid.is_none()) {
        return Err(format!("node {} is not running", p.id));
    }
    let statuses = client.status_all().await;
    let mut leaders = Vec::new();
    for (endpoint, s) in &statuses {
        let s = s.as_ref().map_err(|e| format!("{endpoint}: {e}"))?;
        leaders.push(s.leader);
    }
    let leader = current_leader(client)
        .await
        .ok_or("no leader holds its lease")?;
    if leaders.iter().any(|l| *l != Some(leader.id)) {
        return Err("the nodes do not agree on the leader yet".into());
    }
    let pid = pods
        .iter()
        .find(|p| p.id == leader.id)
        .and_then(|p| p.pid)
        .ok_or_else(|| format!("node {} is not supervised here", leader.id))?;
    if pid != leader.pid {
        return Err(format!(
            "node {} answers with pid {}, but the supervisor started pid {pid}",
            leader.id, leader.pid
        ));
    }
    Ok((leader.id, pid))
}

async fn pods(args: &FailoverArgs) -> Result<Vec<control::Process>, String> {
    match control::ask(&args.data_dir, &Request::Pods, Duration::from_secs(5)).await? {
        Answer::Pods(p) => Ok(p),
        other => Err(format!("raftctl local answered {other:?} to a pod list")),
    }
}

/// Once the signalled process has exited (a SIGTERM'd node may take its
/// grace period), the supervisor starts node `id` again (unless its
/// `--restart` already did).
async fn restart(args: &FailoverArgs, id: u64, old_pid: u32) -> Result<(), CtlError> {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let pods = pods(args).await.map_err(CtlError::error)?;
        match pods.iter().find(|p| p.id == id).map(|p| p.pid) {
            Some(Some(pid)) if pid == old_pid => {}
            None => {
                return Err(CtlError::error(format!(
                    "node {id} is no longer supervised"
                )));
            }
            Some(Some(_)) => return Ok(()),
            Some(None) => break,
        }
        if Instant::now() >= give_up {
            return Err(CtlError::error(format!(
                "node {id} (pid {old_pid}) did not exit within 30 s of the signal"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match control::ask(
        &args.data_dir,
        &Request::Start { id },
        Duration::from_secs(15),
    )
    .await
    {
        Ok(Answer::Started { .. }) => Ok(()),
        Ok(other) => Err(CtlError::error(format!(
            "raftctl local answered {other:?} to a start"
        ))),
        Err(e) => Err(CtlError::new(Exit::Unreachable, e)),
    }
}

/// The human form of a report.
pub fn render(r: &Report) -> String {
    let mut text = format!(
        "{:<6} {:<8} {:<11} {:>12} {:>14} {:>7}\n",
        "trial", "killed", "new leader", "longest gap", "failed writes", "writes"
    );
    for t in &r.trials {
        let new = t.new_leader.map_or("none".into(), |l| format!("node {l}"));
        text.push_str(&format!(
            "{:<6} {:<8} {:<11} {:>10.1}ms {:>14} {:>7}\n",
            t.trial,
            format!("node {}", t.old_leader),
            new,
            t.longest_gap_ms,
            t.failed_writes,
            t.writes
        ));
    }
    let g = &r.longest_gap_ms;
    text.push_str(&format!(
        "longest write gap  min {:.1}ms  median {:.1}ms  max {:.1}ms  ({}, {} writes/s, deadline {:.0}ms)\n\
         failed writes      {} of {}\n",
        g.min,
        g.median,
        g.max,
        r.signal.name(),
        r.rate,
        r.deadline_ms,
        r.failed_writes,
        r.writes
    ));
    for t in r.trials.iter().filter(|t| t.first_error.is_some()) {
        let e = t.first_error.as_deref().unwrap_or_default();
        text.push_str(&format!("trial {}: first failure: {e}\n", t.trial));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_runs_between_acknowledgements_or_to_the_end() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let w = |end: u64, ok: bool| Write {
            started: at(end.saturating_sub(5)),
            ended: at(end),
            error: (!ok).then(|| "deadline".to_string()),
        };
        let writes = vec![
            w(10, true),
            w(20, true),
            w(300, false),
            w(270, true),
            w(280, true),
        ];
        assert_eq!(
            longest_gap(&writes, at(0), at(400)),
            Duration::from_millis(250)
        );
        assert_eq!(
            longest_gap(&writes, at(0), at(700)),
            Duration::from_millis(420)
        );
        assert_eq!(longest_gap(&[], at(0), at(50)), Duration::from_millis(50));
    }

    #[test]
    fn spread_takes_the_median() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }
}
