//! The result of a chaos run: what an operator reads at the end (a table)
//! and what a program reads (`-o json|yaml`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::verdict::IncrCheck;
use crate::ctl::check::StateCheck;
use crate::ctl::output::table;

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Seconds since the run began.
    pub at_seconds: f64,
    pub pod: String,
    pub node: u64,
    /// Whether the pod was the leader's when chosen.
    pub was_leader: bool,
    /// What was done to it: `kill`, `pause 1s` (`fault::FaultKind::label`).
    pub fault: String,
    /// A kill's grace (`forced`, `graceful`, ...); `-` for other faults.
    pub grace: String,
    /// Longest time without a successful operation after this fault.
    pub unavailable_seconds: f64,
}

/// What a partition or a slow link was seen to do, and how the cluster
/// came back once the links healed.
#[derive(Debug, Clone, Serialize)]
pub struct LinkCheck {
    /// The fault's label, as in [`Fault::fault`].
    pub fault: String,
    pub at_seconds: f64,
    /// The leader and its term when the links were cut.
    pub leader: u64,
    pub term: u64,
    /// The links whose messages were lost or slowed, `from->to`.
    pub links: Vec<String>,
    /// Whether the cut was seen to take effect (see `confirmation`).
    pub confirmed: bool,
    /// What was observed, or what was awaited in vain.
    pub confirmation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_after_seconds: Option<f64>,
    /// Whether, after healing, every node answered, a leader held its
    /// lease and the state hashes agreed (a state check is a write)
    /// within the bound.
    pub recovered: bool,
    pub recovery: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_after_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Operations {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed writes kept in the history with an unknown outcome.
    pub indeterminate: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// What the linearizability checker concluded.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LinearizabilityVerdict {
    Linearizable,
    Violation,
    /// The search hit its bound, or the checker failed (see the detail).
    Unknown,
}

impl std::fmt::Display for LinearizabilityVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinearizabilityVerdict::Linearizable => "linearizable",
            LinearizabilityVerdict::Violation => "violation",
            LinearizabilityVerdict::Unknown => "unknown",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Linearizability {
    pub verdict: LinearizabilityVerdict,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub keys: usize,
    pub checked_operations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub platform: String,
    pub duration_seconds: f64,
    /// Ctrl-C ended the run early (the history is still checked).
    pub interrupted: bool,
    pub operations: Operations,
    pub errors: BTreeMap<String, u64>,
    pub faults: Vec<Fault>,
    /// Kinds of `--faults all` this platform or machine cannot inject,
    /// each with why: not tested by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    pub unavailability_seconds: Option<Spread>,
    /// The same, per kind of fault (`kill`, `pause`, `partition
    /// isolate-leader`, `slow`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unavailability_by_kind: BTreeMap<String, Spread>,
    /// Partitions and slow links: seen to take effect, and recovered from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkCheck>,
    pub lost_writes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_write_details: Vec<String>,
    pub linearizability: Linearizability,
    pub incr: IncrCheck,
    /// The members' state hashes compared at the end of the run (`None`
    /// when the caller did not compare them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_states: Option<StateCheck>,
    pub passed: bool,
}

impl Report {
    /// The human summary: the fault list, then one line per measure.
    pub fn table(&self) -> String {
        let faults: Vec<Vec<String>> = self
            .faults
            .iter()
            .map(|f| {
                vec![
                    format!("{:.1}", f.at_seconds),
                    f.pod.clone(),
                    if f.was_leader { "leader" } else { "" }.into(),
                    f.fault.clone(),
                    f.grace.clone(),
                    format!("{:.2}", f.unavailable_seconds),
                ]
            })
            .collect();
        let mut out = table(
            &["AT(s)", "POD", "ROLE", "FAULT", "GRACE", "UNAVAILABLE(s)"],
            &faults,
        );
        out.push('\n');
        let ops = &self.operations;
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let unavailable = match self.unavailability_seconds {
            Some(s) => format!(
                "min {:.2}s  median {:.2}s  max {:.2}s",
                s.min, s.median, s.max
            ),
            None => "no fault injected".into(),
        };
        let lin = &self.linearizability;
        let incr = &self.incr;
        let mut rows = vec![
            vec!["platform".into(), self.platform.clone()],
            vec![
                "duration".into(),
                format!(
                    "{:.1}s{}",
                    self.duration_seconds,
                    if self.interrupted {
                        " (interrupted)"
                    } else {
                        ""
                    }
                ),
            ],
            vec![
                "operations".into(),
                format!(
                    "{} (ok {}, failed {}, indeterminate {})",
                    ops.total, ops.ok, ops.failed, ops.indeterminate
                ),
            ],
            vec!["errors".into(), errors],
            vec!["faults".into(), self.faults.len().to_string()],
        ];
        for line in &self.left_out {
            rows.push(vec!["  not tested".into(), line.clone()]);
        }
        rows.push(vec!["unavailability".into(), unavailable]);
        for (kind, s) in &self.unavailability_by_kind {
            rows.push(vec![
                format!("  {kind}"),
                format!(
                    "min {:.2}s  median {:.2}s  max {:.2}s",
                    s.min, s.median, s.max
                ),
            ]);
        }
        for c in &self.links {
            let after = |t: Option<f64>| t.map_or(String::new(), |t| format!(" after {t:.2}s"));
            rows.push(vec![
                format!("  {} at {:.1}s", c.fault, c.at_seconds),
                format!(
                    "{}{}: {}; {}{}: {}",
                    if c.confirmed {
                        "took effect"
                    } else {
                        "NOT CONFIRMED"
                    },
                    after(c.confirmed_after_seconds),
                    c.confirmation,
                    if c.recovered {
                        "recovered"
                    } else {
                        "NOT RECOVERED"
                    },
                    after(c.recovered_after_seconds),
                    c.recovery
                ),
            ]);
        }
        rows.extend([
            vec!["lost writes".into(), self.lost_writes.to_string()],
            vec![
                "linearizability".into(),
                format!(
                    "{} ({} operations on {} keys){}",
                    lin.verdict,
                    lin.checked_operations,
                    lin.keys,
                    if lin.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", lin.detail)
                    }
                ),
            ],
            vec![
                "incr exactly-once".into(),
                format!(
                    "{} ({} acknowledged, {} indeterminate, final {}{})",
                    if incr.ok { "ok" } else { "VIOLATED" },
                    incr.acknowledged,
                    incr.indeterminate,
                    incr.final_value,
                    if incr.duplicate_results > 0 {
                        format!(", {} duplicate results", incr.duplicate_results)
                    } else {
                        String::new()
                    }
                ),
            ],
            vec!["replica states".into(), self.replica_states_line()],
            vec![
                "result".into(),
                if self.passed { "PASS" } else { "FAIL" }.into(),
            ],
        ]);
        let summary = table(&["MEASURE", "VALUE"], &rows);
        // The header row of a two-column summary says nothing; drop it.
        out.push_str(summary.split_once('\n').map_or("", |(_, rest)| rest));
        for line in &self.lost_write_details {
            out.push_str(&format!("lost: {line}\n"));
        }
        out
    }

    fn replica_states_line(&self) -> String {
        let Some(check) = &self.replica_states else {
            return "not compared".into();
        };
        match check.outcome() {
            Ok(()) => format!(
                "equal ({} members at index {})",
                check.members.len(),
                check.index
            ),
            Err(e) => e.message,
        }
    }
}
