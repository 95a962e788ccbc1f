//! `raftctl chaos`: deletes pods (containers, processes) on a schedule while
//! a checked workload runs, then proves what it can about the history: no
//! acknowledged write lost, linearizable, every INCR applied exactly once,
//! and how long each fault left the cluster unavailable.
//!
//! The workload and the checks live in the library (`workload`, `verdict`,
//! `crate::check::linearizability`) so the test suite runs the same code an
//! operator runs against a real cluster.

pub mod disk;
pub mod links;
pub mod members;
mod report;
pub mod skew;
pub mod verdict;
pub mod workload;

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use std::time::Duration;

use tokio::time::Instant;

pub use report::{
    Fault, Linearizability, LinearizabilityVerdict, LinkCheck, Operations, Report, Spread,
};
pub use workload::{Workload, WorkloadConfig};

use super::check::{self, MemberHash, StateCheck, StateVerdict};
use super::cli::Output;
use super::exit::{CtlError, Exit};
use super::fault::{FaultKind, Faults, NodeChoice};
use super::platform::{self, Grace, Platform, Target};
use super::signals::Signals;
use crate::check::linearizability::{self, CheckResult, OpKind};
use crate::client::{Client, ClientOptions};

/// Which grace each fault gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GracePlan {
    Always(Grace),
    /// Forced and graceful in turn, forced first.
    Alternate,
}

impl GracePlan {
    pub fn parse(text: &str) -> Result<GracePlan, String> {
        match text {
            "alternate" | "both" => Ok(GracePlan::Alternate),
            other => Grace::parse(other).map(GracePlan::Always),
        }
    }

    fn nth(&self, n: usize) -> Grace {
        match self {
            GracePlan::Always(g) => *g,
            GracePlan::Alternate if n % 2 == 0 => Grace::Forced,
            GracePlan::Alternate => Grace::Graceful(None),
        }
    }
}

/// What one chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub duration: Duration,
    pub interval: Duration,
    pub target: Target,
    /// What the faults do, in turn.
    pub faults: Faults,
    /// The grace of each kill.
    pub grace: GracePlan,
    pub workload: WorkloadConfig,
    /// How long to wait for a healthy cluster before a fault and at the end.
    pub settle: Duration,
}

/// Whether every endpoint answers and a leader holds its lease.
async fn healthy(client: &Client) -> bool {
    let answers = client.status_all().await;
    answers.iter().all(|(_, a)| a.is_ok())
        && answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .any(|s| s.leads_with_lease())
}

/// Waits up to `limit` for [`healthy`]; false if it never was.
async fn settle(client: &Client, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if healthy(client).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Runs `plan` on `platform` with the workload against `endpoints` and
/// returns the checked report. Ctrl-C (via `signals`) ends the fault phase
/// early; the history is still checked.
pub async fn run<P: Platform>(
    platform: &P,
    endpoints: Vec<String>,
    plan: &ChaosPlan,
    signals: &mut Signals,
) -> Result<Report, CtlError> {
    let admin = Client::lazy(
        endpoints.clone(),
        ClientOptions {
            attempt_timeout: Duration::from_millis(700),
            connect_timeout: Duration::from_millis(300),
            tls: plan.workload.tls.clone(),
            ..ClientOptions::default()
        },
    )?;
    if let Some(why) = plan.faults.kinds.iter().find_map(|f| platform.refuses(*f)) {
        return Err(CtlError::new(Exit::BadInput, why));
    }
    if !settle(&admin, plan.settle).await {
        return Err(CtlError::new(
            Exit::Unhealthy,
            "the cluster is not healthy (every node answering, a leader with a lease); no fault injected",
        ));
    }
    let epoch = Instant::now();
    let workload = Workload::start(plan.workload.clone(), endpoints.clone(), epoch)?;
    let mut faults: Vec<(u64, Fault)> = Vec::new();
    let mut link_checks: Vec<LinkCheck> = Vec::new();
    let mut interrupted = false;
    let end = epoch + plan.duration;
    let mut next_fault = epoch + plan.interval;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = signals.stop() => { interrupted = true; break; }
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        eprint!(
            "\r[{:>4.0}s/{:.0}s] {} operations, {} faults   ",
            (now - epoch).as_secs_f64(),
            plan.duration.as_secs_f64(),
            workload.completed(),
            faults.len()
        );
        if now < next_fault {
            continue;
        }
        next_fault = now + plan.interval;
        let ready = tokio::select! {
            ok = settle(&admin, plan.settle) => ok,
            _ = signals.stop() => { interrupted = true; break; }
        };
        if !ready {
            eprintln!("\nthe cluster is not healthy; injecting the fault anyway");
        }
        let grace = plan.grace.nth(faults.len());
        let fault = plan.faults.nth(faults.len());
        let before = workload.now();
        let heal_key = format!("{}-links", plan.workload.prefix);
        let injected = if fault.changes_members() || fault.fails_disk() {
            let changed = match fault {
                FaultKind::Member(change) => members::change(platform, &admin, change).await,
                _ => disk::fail(platform, &admin, &plan.target, fault, &heal_key).await,
            };
            changed.map(|c| {
                let mut check = c.check;
                let at = before + c.setup.as_nanos() as u64;
                check.at_seconds = seconds(at);
                link_checks.push(check);
                // Unavailability counts from the change proper (a disk
                // fault has no setup: see chaos::disk).
                (c.pod, c.was_leader, at)
            })
        } else if fault.on_links() || fault.skews() {
            let disturbed = if fault.skews() {
                skew::skew(platform, &admin, &plan.target, fault, &heal_key).await
            } else {
                links::disturb(platform, &admin, &plan.target, fault, &heal_key).await
            };
            disturbed.map(|d| {
                let mut check = d.check;
                check.at_seconds = seconds(before);
                link_checks.push(check);
                // Unavailability counts from the cut, not the heal.
                (d.pod, d.was_leader, before)
            })
        } else {
            // A pause returns once the process runs again: its
            // unavailability counts from its start (docs/testing.md).
            inject(platform, &admin, &plan.target, fault, grace)
                .await
                .map(|(pod, was_leader)| match fault {
                    FaultKind::Pause(_) => (pod, was_leader, before),
                    _ => (pod, was_leader, workload.now()),
                })
        };
        match injected {
            Ok((pod, was_leader, at)) => {
                faults.push((
                    at,
                    Fault {
                        at_seconds: seconds(at),
                        pod: pod.name,
                        node: pod.id,
                        was_leader,
                        fault: fault.label(),
                        grace: match fault {
                            FaultKind::Kill => grace.label(),
                            _ => "-".into(),
                        },
                        unavailable_seconds: 0.0,
                    },
                ));
            }
            Err(e) => eprintln!("\nfault not injected: {e}"),
        }
    }
    eprintln!();
    let stopped = workload.now();
    let config = workload.config.clone();
    let recording = workload.stop().await;
    eprintln!("workload stopped; waiting for the cluster to settle, then reading the final state");
    settle(&admin, plan.settle).await;
    let finals = workload::final_reads(&config, endpoints, epoch, plan.settle)
        .await
        .map_err(|e| CtlError::new(Exit::Unhealthy, format!("cannot read the final state: {e}")))?;
    eprintln!(
        "checking {} operations",
        recording.history.len() + finals.len()
    );
    let mut report = judge(
        platform.kind(),
        &config,
        recording,
        finals,
        faults,
        stopped,
        interrupted,
    )
    .await;
    report.passed &= link_checks.iter().all(|c| c.confirmed && c.recovered);
    report.links = link_checks;
    eprintln!("comparing the members' states");
    compare_states(&mut report, &admin, plan.settle).await;
    Ok(report)
}

/// Ends a run with the members' state hashes compared at one index
/// (`raftctl check`); the run fails unless they are equal.
pub async fn compare_states(report: &mut Report, client: &Client, wait: Duration) {
    let check = match check::compare(client, wait).await {
        Ok(check) => check,
        Err(e) => StateCheck {
            index: 0,
            verdict: StateVerdict::Incomplete,
            members: vec![MemberHash {
                node: 0,
                endpoint: String::new(),
                hash: None,
                note: format!("no state check: {e}"),
            }],
        },
    };
    report.passed &= check.verdict == StateVerdict::Equal;
    report.replica_states = Some(check);
}

/// The pod a fault that names its node acts on (`target` chooses it for
/// [`NodeChoice::Chosen`]), and the leader of the moment.
async fn choose_node<P: Platform>(
    platform: &P,
    admin: &Client,
    target: &Target,
    on: NodeChoice,
) -> Result<(platform::PodInfo, Option<u64>), CtlError> {
    let pods = platform.pods().await?;
    let leader = platform::leader_of(admin).await;
    let pod = match on {
        NodeChoice::Chosen => platform::choose(target, &pods, leader)?,
        NodeChoice::Leader => platform::choose(&Target::Leader, &pods, leader)?,
        NodeChoice::Follower => {
            let followers: Vec<&platform::PodInfo> =
                pods.iter().filter(|p| Some(p.id) != leader).collect();
            (*followers.choose(&mut rand::rng()).ok_or_else(|| {
                CtlError::new(Exit::Unhealthy, "no follower: the cluster has one node")
            })?)
            .clone()
        }
    };
    Ok((pod, leader))
}

/// Injects one `fault` into the pod `target` chooses; returns it, and
/// whether it led when chosen. A pause returns once the pod runs again.
async fn inject<P: Platform>(
    platform: &P,
    admin: &Client,
    target: &Target,
    fault: FaultKind,
    grace: Grace,
) -> Result<(platform::PodInfo, bool), CtlError> {
    let pods = platform.pods().await?;
    let leader = platform::leader_of(admin).await;
    let pod = platform::choose(target, &pods, leader)?;
    match fault {
        FaultKind::Kill => platform.delete_pod(&pod.name, grace).await?,
        FaultKind::Pause(length) => platform.pause_pod(pod.id, length).await?,
        other => {
            return Err(CtlError::error(format!(
                "{} acts on links (chaos::links)",
                other.label()
            )));
        }
    }
    Ok((pod.clone(), leader == Some(pod.id)))
}

/// Checks the recorded history and builds the report: `faults` are the
/// instants (ns since the run began) of the disruptions to measure
/// unavailability after; `stopped` when the workload stopped. Public for
/// runs that disrupt the cluster otherwise (tests/scale.rs scales it).
pub async fn judge(
    kind: &str,
    config: &WorkloadConfig,
    recording: workload::Recording,
    finals: Vec<linearizability::Op>,
    mut faults: Vec<(u64, Fault)>,
    stopped: u64,
    interrupted: bool,
) -> Report {
    let final_values: BTreeMap<String, Option<String>> = finals
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Get { result: Some(v) } => Some((op.key.clone(), v.clone())),
            _ => None,
        })
        .collect();
    let mut history = recording.history;
    let indeterminate = history.iter().filter(|o| o.ret.is_none()).count() as u64;
    let registers: BTreeMap<String, Option<String>> = final_values
        .iter()
        .filter(|(k, _)| **k != config.counter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let lost_write_details = verdict::lost_writes(&history, &registers);
    let incr = verdict::incr_check(
        &history,
        &config.counter(),
        final_values
            .get(&config.counter())
            .cloned()
            .flatten()
            .as_deref(),
    );
    let incr_lost = (incr.acknowledged as i64 - incr.final_value).max(0) as u64;
    history.extend(finals);
    let checked_operations = history.len();
    let keys = config.keys().len();
    use LinearizabilityVerdict as V;
    let checked = tokio::task::spawn_blocking(move || linearizability::check(&history)).await;
    let (verdict_word, detail) = match &checked {
        Ok(CheckResult::Ok) => (V::Linearizable, String::new()),
        Ok(CheckResult::Violation { key, explanation }) => {
            (V::Violation, format!("{key}: {explanation}"))
        }
        Ok(CheckResult::Unknown { key, steps }) => (
            V::Unknown,
            format!("{key}: search gave up after {steps} steps"),
        ),
        Err(e) => (V::Unknown, format!("the checker failed: {e}")),
    };
    let instants: Vec<u64> = faults.iter().map(|(at, _)| *at).collect();
    let gaps = verdict::unavailability(&instants, &recording.successes, stopped);
    for ((_, fault), gap) in faults.iter_mut().zip(&gaps) {
        fault.unavailable_seconds = seconds(*gap);
    }
    let unavailability_seconds = verdict::spread(&gaps).map(|(min, median, max)| Spread {
        min: seconds(min),
        median: seconds(median),
        max: seconds(max),
    });
    let mut by_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for ((_, fault), gap) in faults.iter().zip(&gaps) {
        by_kind.entry(kind_of(&fault.fault)).or_default().push(*gap);
    }
    let unavailability_by_kind = by_kind
        .into_iter()
        .filter_map(|(kind, gaps)| {
            let (min, median, max) = verdict::spread(&gaps)?;
            let spread = Spread {
                min: seconds(min),
                median: seconds(median),
                max: seconds(max),
            };
            Some((kind, spread))
        })
        .collect();
    let failed: u64 = recording.errors.values().sum();
    let lost_writes = lost_write_details.len() as u64 + incr_lost;
    let passed = lost_writes == 0 && verdict_word == V::Linearizable && incr.ok;
    Report {
        platform: kind.to_string(),
        duration_seconds: seconds(stopped),
        interrupted,
        operations: Operations {
            total: recording.total,
            ok: recording.total - failed,
            failed,
            indeterminate,
        },
        errors: recording
            .errors
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        faults: faults.into_iter().map(|(_, f)| f).collect(),
        left_out: Vec::new(),
        unavailability_seconds,
        unavailability_by_kind,
        links: Vec::new(),
        lost_writes,
        lost_write_details,
        linearizability: Linearizability {
            verdict: verdict_word,
            detail,
            keys,
            checked_operations,
        },
        incr,
        replica_states: None,
        passed,
    }
}

/// A fault label's kind: `pause 900ms` is a `pause`, `partition bridge 3s`
/// a `partition bridge`.
fn kind_of(label: &str) -> String {
    let words: Vec<&str> = label.split_whitespace().collect();
    match words.as_slice() {
        ["partition", kind, ..] => format!("partition {kind}"),
        ["member", change, ..] => format!("member {change}"),
        ["skew", rate, ..] => format!("skew {rate}"),
        ["disk", fault, ..] => format!("disk {fault}"),
        [first, ..] => (*first).to_string(),
        [] => String::new(),
    }
}

/// Prints `report` in `output`'s format; an error (exit 1) if it failed.
pub fn finish(report: &Report, output: Output) -> Result<(), CtlError> {
    match output {
        Output::Table => print!("{}", report.table()),
        format => super::output::print_structured(format, report)?,
    }
    if report.passed {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if report.lost_writes > 0 {
        reasons.push(format!("{} acknowledged writes lost", report.lost_writes));
    }
    if report.linearizability.verdict != LinearizabilityVerdict::Linearizable {
        reasons.push(format!("history {}", report.linearizability.verdict));
    }
    if !report.incr.ok {
        reasons.push("INCR not exactly-once".to_string());
    }
    for c in &report.links {
        if !c.confirmed {
            reasons.push(format!(
                "{} at {:.1}s did not take effect ({})",
                c.fault, c.at_seconds, c.confirmation
            ));
        }
        if !c.recovered {
            reasons.push(format!(
                "after {} at {:.1}s the cluster did not recover ({})",
                c.fault, c.at_seconds, c.recovery
            ));
        }
    }
    if let Some(Err(e)) = report.replica_states.as_ref().map(StateCheck::outcome) {
        reasons.push(e.message);
    }
    Err(CtlError::error(format!("chaos: {}", reasons.join(", "))))
}
