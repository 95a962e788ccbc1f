//! Partitions and slow links in a chaos run: cut (or slow) the links the
//! fault names, confirm through the nodes' status that the cut took
//! effect, heal, and confirm that the cluster converged. What each fault
//! means and what is confirmed: docs/testing.md ("Faults").

use std::time::Duration;

use tokio::time::Instant;

use super::report::LinkCheck;
use crate::client::Client;
use crate::ctl::check::{self, StateVerdict};
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::fault::{FaultKind, LinkEffect, LinkFault, Partition};
use crate::ctl::platform::{self, Platform, PodInfo, Target};
use crate::pb::StatusResponse;

/// The election timeout the confirmation bounds assume: the server's
/// default (docs/node.md).
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);

/// How long after a heal the cluster has to converge: two election
/// timeouts (a vote split once) and 5 s for reconnecting peer streams,
/// whose backoff reaches 2 s while a link is cut.
pub fn recovery_bound() -> Duration {
    2 * ELECTION_TIMEOUT + Duration::from_secs(5)
}

const POLL: Duration = Duration::from_millis(100);

/// What a link fault did: the pod it centred on, whether that pod led,
/// and the check for the report (its `at_seconds` is filled by the caller).
pub struct Disturbed {
    pub pod: PodInfo,
    pub was_leader: bool,
    pub check: LinkCheck,
}

/// The answers of the nodes that answered.
pub(super) async fn statuses(admin: &Client) -> Vec<StatusResponse> {
    admin
        .status_all()
        .await
        .into_iter()
        .filter_map(|(_, a)| a.ok())
        .collect()
}

/// The leader of the highest term among `answers`, with that term.
pub(super) fn leader_and_term(answers: &[StatusResponse]) -> Option<(u64, u64)> {
    answers
        .iter()
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term)
        .map(|s| (s.id, s.term))
}

/// Whether the partition took effect, from the nodes' `answers`: what was
/// observed, if so. `cut` is the partition's links, `leader` led at `term`
/// when they were cut.
pub fn took_effect(
    partition: Partition,
    leader: u64,
    term: u64,
    cut: &[(u64, u64)],
    answers: &[StatusResponse],
) -> Option<String> {
    // The nodes that no longer hear the leader.
    let far: Vec<u64> = cut
        .iter()
        .filter(|(from, _)| *from == leader)
        .map(|(_, to)| *to)
        .collect();
    let old = answers.iter().find(|s| s.id == leader)?;
    let lapsed = !(old.leads_with_lease() && old.term == term);
    let old_now = format!(
        "node {leader} is {} at term {} with {:.2}s of lease",
        old.role, old.term, old.lease_remaining_seconds
    );
    match partition {
        Partition::IsolateLeader | Partition::LeaderMinority | Partition::OneWayOut => {
            let new = answers
                .iter()
                .find(|s| far.contains(&s.id) && s.role == "leader" && s.term > term)?;
            lapsed.then(|| {
                format!(
                    "node {} leads at term {} on the majority side (node {leader} led at {term}); \
                     {old_now}",
                    new.id, new.term
                )
            })
        }
        Partition::OneWayIn => lapsed.then(|| format!("the leader's lease lapsed: {old_now}")),
        Partition::Bridge => {
            let stopped = far.iter().all(|c| {
                answers
                    .iter()
                    .find(|s| s.id == *c)
                    .is_some_and(|s| s.leader != Some(leader) || s.term > term)
            });
            stopped.then(|| format!("nodes {far:?} stopped following node {leader} (term {term})"))
        }
    }
}

/// What was awaited, for a partition that was not seen to take effect.
fn awaited(partition: Partition, leader: u64) -> String {
    match partition {
        Partition::IsolateLeader | Partition::LeaderMinority | Partition::OneWayOut => format!(
            "no leader of a higher term on the majority side, or node {leader} still led with \
             its lease"
        ),
        Partition::OneWayIn => format!("node {leader} still led with its lease"),
        Partition::Bridge => format!("the far side still followed node {leader}"),
    }
}

/// Injects link fault `fault` (a partition around the leader, or a slow
/// link at the pod `target` chooses), confirms it, waits out its length,
/// heals and confirms the recovery. `heal_key` is a key outside the
/// workload's that a slow link's confirming write may use.
pub async fn disturb<P: Platform>(
    platform: &P,
    admin: &Client,
    target: &Target,
    fault: FaultKind,
    heal_key: &str,
) -> Result<Disturbed, CtlError> {
    let pods = platform.pods().await?;
    let ids: Vec<u64> = pods.iter().map(|p| p.id).collect();
    let answers = statuses(admin).await;
    let (leader, term) = leader_and_term(&answers)
        .ok_or_else(|| CtlError::new(Exit::Unhealthy, "no leader: nothing to partition around"))?;
    let (pod, faults, length) = match fault {
        FaultKind::Partition(partition, length) => {
            let pod = platform::choose(&Target::Leader, &pods, Some(leader))?;
            let faults = partition
                .cut(leader, &ids)
                .into_iter()
                .map(|(from, to)| LinkFault {
                    from,
                    to,
                    effect: LinkEffect::Lost,
                })
                .collect::<Vec<_>>();
            (pod, faults, length)
        }
        FaultKind::SlowLink {
            delay,
            jitter,
            length,
        } => {
            let pod = platform::choose(target, &pods, Some(leader))?;
            let effect = LinkEffect::Slow { delay, jitter };
            let faults = ids
                .iter()
                .filter(|&&x| x != pod.id)
                .flat_map(|&x| {
                    [
                        LinkFault {
                            from: pod.id,
                            to: x,
                            effect,
                        },
                        LinkFault {
                            from: x,
                            to: pod.id,
                            effect,
                        },
                    ]
                })
                .collect();
            (pod, faults, length)
        }
        other => {
            return Err(CtlError::error(format!(
                "{} is not a link fault",
                other.label()
            )));
        }
    };
    let pod = pod.clone();
    let cut: Vec<(u64, u64)> = faults.iter().map(|f| (f.from, f.to)).collect();
    platform.set_links(&faults, length).await?;
    let start = Instant::now();
    let end = start + length;
    let (confirmed, confirmation, confirmed_after) = match fault {
        FaultKind::Partition(partition, _) => {
            confirm_partition(admin, partition, leader, term, &cut, start, end).await
        }
        FaultKind::SlowLink { delay, .. } => {
            confirm_slow(admin, heal_key, delay, pod.id == leader, start).await
        }
        _ => unreachable!("checked above"),
    };
    tokio::time::sleep_until(end).await;
    platform.heal_links().await?;
    let (recovered, recovery, recovered_after) = recover(admin).await;
    Ok(Disturbed {
        was_leader: pod.id == leader,
        pod,
        check: LinkCheck {
            fault: fault.label(),
            at_seconds: 0.0,
            leader,
            term,
            links: cut.iter().map(|(f, t)| format!("{f}->{t}")).collect(),
            confirmed,
            confirmation,
            confirmed_after_seconds: confirmed_after,
            recovered,
            recovery,
            recovered_after_seconds: recovered_after,
        },
    })
}

/// Polls the nodes until the partition shows (see [`took_effect`]) or
/// `end`, when the links heal.
async fn confirm_partition(
    admin: &Client,
    partition: Partition,
    leader: u64,
    term: u64,
    cut: &[(u64, u64)],
    start: Instant,
    end: Instant,
) -> (bool, String, Option<f64>) {
    loop {
        let answers = statuses(admin).await;
        if let Some(seen) = took_effect(partition, leader, term, cut, &answers) {
            return (true, seen, Some(start.elapsed().as_secs_f64()));
        }
        if Instant::now() + POLL >= end {
            let why = format!(
                "not seen within {:.1}s: {}",
                start.elapsed().as_secs_f64(),
                awaited(partition, leader)
            );
            return (false, why, None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A write through the slow links: when the slowed pod leads, its commit
/// waits for a follower's answer, one delayed message each way.
async fn confirm_slow(
    admin: &Client,
    key: &str,
    delay: Duration,
    leads: bool,
    start: Instant,
) -> (bool, String, Option<f64>) {
    let sent = Instant::now();
    match admin.set(key.as_bytes(), b"slow").await {
        Ok(()) => {
            let took = sent.elapsed();
            let slowed = !leads || took >= delay;
            let what = format!(
                "a write committed in {:.0}ms{}",
                took.as_secs_f64() * 1e3,
                match (leads, slowed) {
                    (true, true) =>
                        format!(" (>= the {delay:?} delay: the leader's links are slow)"),
                    (true, false) => format!(" (< the {delay:?} delay: the links were not slowed)"),
                    (false, _) => " (a follower is slowed; the other one commits)".into(),
                }
            );
            (slowed, what, Some(start.elapsed().as_secs_f64()))
        }
        Err(e) => (
            false,
            format!("a write through the slow links failed: {e}"),
            None,
        ),
    }
}

/// After the heal: every node answers, a leader holds its lease, and a
/// state check (a write) finds equal hashes, within [`recovery_bound`].
pub(super) async fn recover(admin: &Client) -> (bool, String, Option<f64>) {
    let start = Instant::now();
    let deadline = start + recovery_bound();
    let mut last = String::from("not healthy yet");
    while Instant::now() < deadline {
        if super::healthy(admin).await {
            let wait = deadline.saturating_duration_since(Instant::now());
            match check::compare(admin, wait.min(Duration::from_secs(2))).await {
                Ok(c) if c.verdict == StateVerdict::Equal => {
                    let seen = format!(
                        "every node answers, a leader holds its lease, state hashes equal at \
                         index {}",
                        c.index
                    );
                    return (true, seen, Some(start.elapsed().as_secs_f64()));
                }
                Ok(c) => last = format!("state hashes {:?} at index {}", c.verdict, c.index),
                Err(e) => last = format!("no state check: {e}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    (
        false,
        format!(
            "not converged within {:.1}s of the heal: {last}",
            recovery_bound().as_secs_f64()
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, role: &str, term: u64, leader: Option<u64>, lease: f64) -> StatusResponse {
        StatusResponse {
            id,
            role: role.into(),
            term,
            leader,
            lease_remaining_seconds: lease,
            ..Default::default()
        }
    }

    #[test]
    fn a_partition_is_confirmed_only_by_what_its_name_promises() {
        let cut = Partition::IsolateLeader.cut(0, &[0, 1, 2]);
        let before = [
            node(0, "leader", 3, Some(0), 0.2),
            node(1, "follower", 3, Some(0), 0.0),
            node(2, "follower", 3, Some(0), 0.0),
        ];
        assert_eq!(
            took_effect(Partition::IsolateLeader, 0, 3, &cut, &before),
            None
        );
        // A new leader, but the old one still holds its lease: not yet.
        let mut after = before.clone();
        after[1] = node(1, "leader", 4, Some(1), 0.2);
        assert_eq!(
            took_effect(Partition::IsolateLeader, 0, 3, &cut, &after),
            None
        );
        after[0] = node(0, "leader", 3, Some(0), 0.0);
        let seen = took_effect(Partition::IsolateLeader, 0, 3, &cut, &after).unwrap();
        assert!(seen.starts_with("node 1 leads at term 4"), "{seen}");

        let one_way_in = Partition::OneWayIn.cut(0, &[0, 1, 2]);
        assert_eq!(
            took_effect(Partition::OneWayIn, 0, 3, &one_way_in, &before),
            None
        );
        let lapsed = [node(0, "follower", 3, None, 0.0)];
        assert!(took_effect(Partition::OneWayIn, 0, 3, &one_way_in, &lapsed).is_some());

        // Bridge: node 1 bridges; node 2 must stop following leader 0.
        let bridge = Partition::Bridge.cut(0, &[0, 1, 2]);
        assert_eq!(took_effect(Partition::Bridge, 0, 3, &bridge, &before), None);
        let mut split = before.clone();
        split[2] = node(2, "pre-candidate", 3, None, 0.0);
        assert!(took_effect(Partition::Bridge, 0, 3, &bridge, &split).is_some());
    }
}
