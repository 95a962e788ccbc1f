//! Replica hash checks: do the replicas hold the same state at one index?
//!
//! A state check is an entry in the log (`StateCheckCmd`). Every replica
//! that applies it hashes its whole state machine as of that entry
//! (`StateMachine::state_hash`, computed by the caller off its event
//! loop) and hands the hash back ([`StateChecks::hashed`]). The leader then
//! proposes its own hash in a `StateReportCmd`; every other replica that
//! hashed the same check compares, and a difference is a
//! [`Comparison`] with `equal == false`: this replica's state machine
//! diverged from the leader's (docs/consensus.md, "Replica hash checks").
//!
//! The leader proposes a check every `interval` while entries are applied,
//! and `raftctl check` proposes one on demand (not more often than
//! [`MIN_GAP`], so a client cannot make every replica hash a large state
//! back to back). Everything here is a function of what was applied and
//! the time passed in, so the simulator runs it as the node does.

use crate::raft::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Hashes of this replica's own checks kept for reports and for status.
const KEPT: usize = 8;

/// The shortest time between two checks this leader proposes.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// The default time between two scheduled checks (0 in the node's
/// settings turns them off).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// One replica's hash compared with a reporter's, at one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub index: u64,
    pub ours: u64,
    pub theirs: u64,
    pub reporter: u64,
    pub equal: bool,
}

/// What became of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Compared(Comparison),
    /// This replica did not hash that check (it restored a snapshot past
    /// it, or the hash is no longer kept): nothing to compare.
    Skipped,
    /// This replica's hash is still being computed: compared once it is.
    Waiting,
}

#[derive(Debug, Default)]
pub struct StateChecks {
    /// This replica's hashes at its latest checks, by index.
    own: BTreeMap<u64, u64>,
    /// Checks applied here whose hash is being computed.
    hashing: BTreeSet<u64>,
    /// Reports (reporter, hash) that arrived before this replica's hash.
    waiting: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Leader's schedule: when it last proposed a check, and the applied
    /// index then.
    last_proposed: Option<(Instant, u64)>,
    /// Time between scheduled checks; `None` proposes them on demand only.
    interval: Option<Duration>,
    mismatches: u64,
}

impl StateChecks {
    pub fn new(interval: Option<Duration>) -> StateChecks {
        StateChecks {
            interval,
            ..StateChecks::default()
        }
    }

    /// A check was applied at `index`: its hash is on its way.
    pub fn applied(&mut self, index: u64) {
        self.hashing.insert(index);
    }

    /// This replica's hash at `index` is known; compares the reports that
    /// waited for it.
    pub fn hashed(&mut self, index: u64, hash: u64) -> Vec<Comparison> {
        self.hashing.remove(&index);
        self.own.insert(index, hash);
        while self.own.len() > KEPT {
            self.own.pop_first();
        }
        let reports = self.waiting.remove(&index).unwrap_or_default();
        reports
            .into_iter()
            .map(|(reporter, theirs)| self.compare(index, hash, reporter, theirs))
            .collect()
    }

    /// A report of `reporter`'s hash at `index` was applied.
    pub fn report(&mut self, index: u64, reporter: u64, theirs: u64) -> Outcome {
        if let Some(&ours) = self.own.get(&index) {
            return Outcome::Compared(self.compare(index, ours, reporter, theirs));
        }
        if self.hashing.contains(&index) {
            self.waiting
                .entry(index)
                .or_default()
                .push((reporter, theirs));
            return Outcome::Waiting;
        }
        Outcome::Skipped
    }

    fn compare(&mut self, index: u64, ours: u64, reporter: u64, theirs: u64) -> Comparison {
        let equal = ours == theirs;
        if !equal {
            self.mismatches += 1;
        }
        Comparison {
            index,
            ours,
            theirs,
            reporter,
            equal,
        }
    }

    /// Whether the leader should propose a scheduled check now: the interval
    /// has passed since the last one and entries were applied since.
    pub fn due(&self, now: Instant, applied: u64) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        match self.last_proposed {
            None => applied > 0,
            Some((at, index)) => now.0.saturating_sub(at.0) >= interval && applied > index,
        }
    }

    /// Whether a check asked for now would come too soon after the last.
    pub fn too_soon(&self, now: Instant) -> bool {
        self.last_proposed
            .is_some_and(|(at, _)| now.0.saturating_sub(at.0) < MIN_GAP)
    }

    /// This leader proposed a check at `now`, with `applied` applied.
    pub fn proposed(&mut self, now: Instant, applied: u64) {
        self.last_proposed = Some((now, applied));
    }

    /// This replica's kept hashes, ascending by index.
    pub fn hashes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.own.iter().map(|(&i, &h)| (i, h))
    }

    /// How many comparisons found a different hash since start.
    pub fn mismatches(&self) -> u64 {
        self.mismatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_compared_whether_it_comes_before_or_after_the_hash() {
        let mut c = StateChecks::new(None);
        c.applied(5);
        assert_eq!(c.report(5, 1, 0xab), Outcome::Waiting);
        let after = c.hashed(5, 0xab);
        assert_eq!(after.len(), 1);
        assert!(after[0].equal);
        let Outcome::Compared(late) = c.report(5, 2, 0xcd) else {
            panic!("the hash is known");
        };
        assert!(!late.equal);
        assert_eq!((late.ours, late.theirs, late.reporter), (0xab, 0xcd, 2));
        assert_eq!(c.mismatches(), 1);
    }

    #[test]
    fn a_check_this_replica_did_not_hash_is_skipped() {
        let mut c = StateChecks::new(None);
        assert_eq!(c.report(9, 1, 1), Outcome::Skipped);
        for i in 1..=KEPT as u64 + 1 {
            c.applied(i);
            c.hashed(i, i);
        }
        assert_eq!(c.report(1, 1, 1), Outcome::Skipped, "no longer kept");
        assert_eq!(c.hashes().count(), KEPT);
    }

    #[test]
    fn scheduled_checks_wait_for_the_interval_and_for_new_entries() {
        let t = |s: u64| Instant(Duration::from_secs(s));
        let mut c = StateChecks::new(Some(Duration::from_secs(60)));
        assert!(!c.due(t(0), 0), "nothing applied yet");
        assert!(c.due(t(0), 3));
        c.proposed(t(0), 3);
        assert!(c.too_soon(t(0)));
        assert!(!c.due(t(59), 10));
        assert!(!c.due(t(60), 3), "nothing applied since");
        assert!(c.due(t(60), 4));
        assert!(!StateChecks::new(None).due(t(1000), 10), "off");
    }
}
