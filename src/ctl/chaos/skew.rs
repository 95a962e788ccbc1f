//! A clock skew in a chaos run: one node restarted on a clock running at
//! another rate (libfaketime on the local platform), made leader again if
//! it led, the leader of the moment isolated once while the skew lasts,
//! then the node put back on the real clock. The lease argument assumes
//! every clock within the drift bound ρ of real time (docs/consensus.md):
//! within it the run must pass; far beyond it (a leader at half speed
//! believes its lease lasts twice as long) the history shows what a
//! broken assumption costs. The node's own uptime, read before and after,
//! confirms the rate it really ran at.

use std::time::Duration;

use tokio::time::Instant;

use super::links::{self, Disturbed};
use super::members;
use crate::client::Client;
use crate::ctl::exit::CtlError;
use crate::ctl::fault::{DEFAULT_CUT, FaultKind, Partition};
use crate::ctl::platform::{Platform, Target};

/// How long a restarted node has to rejoin, and a transfer to take effect.
const SETTLE: Duration = Duration::from_secs(30);

/// How far the measured rate may stray from the one asked for, beyond
/// what the status calls' own durations leave uncertain.
const RATE_SLACK: f64 = 0.002;

/// The node's uptime (its own clock) and the real instants around the
/// call that read it.
struct Reading {
    uptime: f64,
    sent: Instant,
    answered: Instant,
}

async fn read_uptime(admin: &Client, endpoint: &str) -> Option<Reading> {
    let sent = Instant::now();
    let status = admin.status(endpoint).await.ok()?;
    Some(Reading {
        uptime: status.uptime_seconds,
        sent,
        answered: Instant::now(),
    })
}

/// The rates the node's clock may have run at between two readings: its
/// uptime's advance over the longest and the shortest real span the calls
/// allow.
pub fn rate_bounds(before: (f64, f64, f64), after: (f64, f64, f64)) -> Option<(f64, f64)> {
    // (uptime, sent, answered), the instants in seconds.
    let advance = after.0 - before.0;
    let longest = after.2 - before.1;
    let shortest = after.1 - before.2;
    (shortest > 0.0 && advance > 0.0).then(|| (advance / longest, advance / shortest))
}

/// Injects skew `fault` (see the module's comment) into the pod `target`
/// chooses (or the one the fault names); `heal_key` is as for
/// [`links::disturb`].
pub async fn skew<P: Platform>(
    platform: &P,
    admin: &Client,
    target: &Target,
    fault: FaultKind,
    heal_key: &str,
) -> Result<Disturbed, CtlError> {
    let FaultKind::Skew {
        rate_ppm,
        on,
        length,
    } = fault
    else {
        return Err(CtlError::error(format!("{} is not a skew", fault.label())));
    };
    let (pod, leader) = super::choose_node(platform, admin, target, on).await?;
    let endpoint = pod.endpoint.clone().ok_or_else(|| {
        CtlError::error(format!(
            "{} has no client endpoint to read its clock",
            pod.name
        ))
    })?;
    let was_leader = leader == Some(pod.id);
    let rate = f64::from(rate_ppm) / 1e6;
    // Back on the real clock by itself some time after the run would have
    // restored it.
    platform
        .set_clock(pod.id, Some(rate_ppm), length + SETTLE * 2)
        .await?;
    let mut notes = Vec::new();
    let ready = super::settle(admin, SETTLE).await;
    if !ready {
        notes.push(format!(
            "the cluster was not healthy within {SETTLE:?} of {}'s restart",
            pod.name
        ));
    }
    let led = if was_leader {
        let led = members::transfer_to(admin, pod.id, &endpoint, SETTLE)
            .await
            .is_some();
        if !led {
            notes.push(format!(
                "node {} never led again on its skewed clock",
                pod.id
            ));
        }
        led
    } else {
        true
    };
    let start = Instant::now();
    let before = read_uptime(admin, &endpoint).await;
    // The leader of the moment (the skewed node, if it leads) cut off.
    let cut = FaultKind::Partition(Partition::IsolateLeader, DEFAULT_CUT);
    let mut disturbed = links::disturb(platform, admin, &Target::Leader, cut, heal_key).await?;
    tokio::time::sleep_until(start + length).await;
    let after = read_uptime(admin, &endpoint).await;
    let bounds = match (&before, &after) {
        (Some(b), Some(a)) => {
            let at = |r: &Reading| {
                (
                    r.uptime,
                    (r.sent - start).as_secs_f64(),
                    (r.answered - start).as_secs_f64(),
                )
            };
            rate_bounds(at(b), at(a))
        }
        _ => None,
    };
    let rate_seen = match bounds {
        Some((lo, hi)) => {
            let ok = lo - RATE_SLACK <= rate && rate <= hi + RATE_SLACK;
            let what = format!(
                "node {}'s clock ran at x{:.4}–x{:.4} of real time (asked x{rate})",
                pod.id, lo, hi
            );
            if !ok {
                notes.push(format!("{what}: not the rate asked for"));
            }
            (ok, what)
        }
        None => {
            notes.push(format!("node {}'s uptime could not be read twice", pod.id));
            (false, String::new())
        }
    };
    platform.set_clock(pod.id, None, Duration::ZERO).await?;
    let back = super::settle(admin, SETTLE).await;
    if !back {
        notes.push(format!(
            "the cluster was not healthy within {SETTLE:?} of {}'s restart on the real clock",
            pod.name
        ));
    }
    let check = &mut disturbed.check;
    check.fault = fault.label();
    check.confirmed &= rate_seen.0 && led && ready;
    check.confirmation = [rate_seen.1, check.confirmation.clone()]
        .into_iter()
        .chain(notes.iter().cloned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    check.recovered &= back;
    Ok(Disturbed {
        pod,
        was_leader,
        check: disturbed.check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_bounded_by_the_calls_durations() {
        // 4 s of uptime over 8 s: half speed, within what 10 ms calls allow.
        let (lo, hi) = rate_bounds((1.0, 0.0, 0.01), (5.0, 8.0, 8.01)).unwrap();
        assert!(lo < 0.5 && 0.5 < hi && hi - lo < 0.002, "{lo} {hi}");
        // A clock that did not advance, or overlapping calls: no rate.
        assert_eq!(rate_bounds((1.0, 0.0, 1.0), (1.0, 2.0, 3.0)), None);
        assert_eq!(rate_bounds((1.0, 0.0, 2.0), (2.0, 1.0, 3.0)), None);
    }
}
