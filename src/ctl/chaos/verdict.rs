//! What a chaos run's history proves beyond linearizability, in the terms an
//! operator asks about: were acknowledged writes lost, did every INCR apply
//! exactly once, how long was the cluster unavailable after each fault.
//! Pure functions over the recorded history, so they are tested on
//! hand-made histories.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::linearizability::{Op, OpKind};

/// The value an op wrote, if it wrote (or may have written) one:
/// `Some(None)` when it wrote a value we do not know (an INCR without answer).
fn written(op: &Op) -> Option<Option<String>> {
    match &op.kind {
        OpKind::Set { value } => Some(Some(value.clone())),
        OpKind::Cas { new, result, .. } if *result != Some(false) => Some(Some(new.clone())),
        OpKind::Incr { result } => Some(result.map(|v| v.to_string())),
        _ => None,
    }
}

/// Whether an op is a write the client saw succeed (and take effect).
fn acknowledged_write(op: &Op) -> bool {
    op.ret.is_some()
        && match &op.kind {
            OpKind::Set { .. } => true,
            OpKind::Cas { result, .. } => *result == Some(true),
            OpKind::Incr { result } => result.is_some(),
            _ => false,
        }
}

/// Acknowledged writes whose effect is missing from the final state:
/// the final value of a key must come from a write that no acknowledged
/// write followed (values are unique per write). One line per lost write.
pub fn lost_writes(history: &[Op], finals: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut lost = Vec::new();
    for (key, last) in finals {
        let ops: Vec<&Op> = history.iter().filter(|o| &o.key == key).collect();
        let acked: Vec<&&Op> = ops.iter().filter(|o| acknowledged_write(o)).collect();
        let Some(last) = last else {
            for w in &acked {
                lost.push(format!(
                    "{key}: {:?} acknowledged, key absent at the end",
                    w.kind
                ));
            }
            continue;
        };
        let producers: Vec<&&Op> = ops
            .iter()
            .filter(|o| written(o).flatten().as_ref() == Some(last))
            .collect();
        if producers.is_empty() {
            let maybe_unknown_incr = ops.iter().any(|o| written(o) == Some(None));
            if !maybe_unknown_incr && !acked.is_empty() {
                lost.push(format!("{key}: final value {last:?} was never written"));
            }
            continue;
        }
        // The latest-starting acknowledged write that began after every
        // producer had completed: if it exists, the final value overwrote it.
        let followed = |p: &Op| {
            acked
                .iter()
                .find(|w| p.ret.is_some_and(|r| r < w.call))
                .copied()
        };
        if producers.iter().all(|p| followed(p).is_some()) {
            let w = producers
                .iter()
                .filter_map(|p| followed(p))
                .max_by_key(|w| w.call)
                .expect("all producers are followed");
            lost.push(format!(
                "{key}: {:?} acknowledged at {:.3}s, but the final value {last:?} was written before it",
                w.kind,
                w.ret.unwrap_or(0) as f64 / 1e9
            ));
        }
    }
    lost
}

/// The exactly-once check of the counter, which only INCR writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncrCheck {
    /// INCRs the client saw succeed.
    pub acknowledged: u64,
    /// INCRs without a definite answer (may or may not have applied).
    pub indeterminate: u64,
    /// The counter's value at the end.
    pub final_value: i64,
    /// Acknowledged INCRs that returned the same value (applied once for two).
    pub duplicate_results: u64,
    /// acknowledged <= final <= acknowledged + indeterminate, no duplicates.
    pub ok: bool,
}

pub fn incr_check(history: &[Op], counter: &str, final_value: Option<&str>) -> IncrCheck {
    let mut acknowledged = 0;
    let mut indeterminate = 0;
    let mut results = BTreeMap::<i64, u64>::new();
    for op in history.iter().filter(|o| o.key == counter) {
        if let OpKind::Incr { result } = op.kind {
            match (result, op.ret) {
                (Some(v), Some(_)) => {
                    acknowledged += 1;
                    *results.entry(v).or_default() += 1;
                }
                _ => indeterminate += 1,
            }
        }
    }
    let final_value = final_value.and_then(|v| v.parse().ok()).unwrap_or(0);
    let duplicate_results = results.values().map(|n| n - 1).sum();
    let fits = i128::from(acknowledged) <= i128::from(final_value)
        && i128::from(final_value) <= i128::from(acknowledged + indeterminate);
    IncrCheck {
        acknowledged,
        indeterminate,
        final_value,
        duplicate_results,
        ok: fits && duplicate_results == 0,
    }
}

/// Per fault, the longest time without a successful operation from the
/// fault until the next fault (or `end`): `faults` and `successes` in ns.
pub fn unavailability(faults: &[u64], successes: &[u64], end: u64) -> Vec<u64> {
    let mut successes = successes.to_vec();
    successes.sort_unstable();
    faults
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let until = faults.get(i + 1).copied().unwrap_or(end);
            let mut prev = at;
            let mut gap = 0;
            let mut closed = false;
            for &s in successes.iter().filter(|&&s| s > at) {
                if s >= until {
                    // An outage that outlasts the window is this fault's.
                    gap = gap.max(if prev == at { s - at } else { until - prev });
                    closed = true;
                    break;
                }
                gap = gap.max(s - prev);
                prev = s;
            }
            if !closed {
                gap = gap.max(until.saturating_sub(prev));
            }
            gap
        })
        .collect()
}

/// (min, median, max) of `values`, `None` if empty.
pub fn spread(values: &[u64]) -> Option<(u64, u64, u64)> {
    let mut v = values.to_vec();
    v.sort_unstable();
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

#[cfg(test)]
mod tests;
