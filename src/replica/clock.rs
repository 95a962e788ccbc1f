//! Cluster time between entries (docs/design.md, "Cluster time").
//!
//! Cluster time lives in the state machine and moves only through the log:
//! each proposal carries a stamp, and applying it moves cluster time to the
//! stamp if that is later. A leader stamps a proposal with the cluster time
//! of the entry it applied last (the one that moved it) plus the time its
//! *monotonic* clock measured since it applied that entry. No wall clock
//! enters, so offsets between nodes and wall clocks stepping back change
//! nothing.
//!
//! Why it is never early beyond the drift bound: an entry is applied after
//! it was stamped, and each leader adds only what its own clock measured
//! since, which runs at most `1 + max_clock_drift` times real time. So
//! cluster time never gets ahead of real time by more than that rate.
//!
//! Why it is late by a bounded amount: between entries the applied cluster
//! time stands still, so an idle leader proposes a time entry every
//! [`TIME_ENTRY_INTERVAL`] while a key has a deadline (every
//! [`SESSION_TIME_ENTRY_INTERVAL`] while only sessions exist, which expire
//! after an hour). A new leader measures from when it applied the last entry,
//! not from when that entry was stamped, so a failover loses the replication
//! delay plus the time until its first entry commits (election, the old
//! lease's wait, its no-op). A restarted node loses its downtime the same
//! way. See docs/node.md for the bound.

use crate::raft::Instant;
use std::time::Duration;

/// Longest time an idle leader lets pass without an entry while keys have
/// a deadline: reads see deadlines at most this late (plus commit latency).
pub const TIME_ENTRY_INTERVAL: Duration = Duration::from_millis(250);
/// The same while only sessions (which expire after an hour) need time.
pub const SESSION_TIME_ENTRY_INTERVAL: Duration = Duration::from_secs(5);

/// What a replica knows of cluster time between entries.
#[derive(Debug)]
pub(super) struct ClusterClock {
    /// Cluster time (ms) of the applied entry that last moved it.
    applied_ms: u64,
    /// When this node applied that entry (or restored the snapshot), on its
    /// monotonic clock.
    applied_at: Instant,
    /// When this node last proposed an entry, as leader.
    last_proposal: Option<Instant>,
}

impl ClusterClock {
    pub fn new(applied_ms: u64, now: Instant) -> ClusterClock {
        ClusterClock {
            applied_ms,
            applied_at: now,
            last_proposal: None,
        }
    }

    /// The state machine's cluster time after an apply: it moved (or a
    /// snapshot was restored, `reset`), so measure from now.
    pub fn applied(&mut self, cluster_ms: u64, now: Instant, reset: bool) {
        if reset || cluster_ms > self.applied_ms {
            self.applied_ms = cluster_ms;
            self.applied_at = now;
        }
    }

    /// The stamp of a proposal made at `now`.
    pub fn stamp(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_since(self.applied_at).as_millis();
        self.applied_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    pub fn proposed(&mut self, now: Instant) {
        self.last_proposal = Some(now);
    }

    /// Forgets the last proposal (leadership changed hands): a new leader
    /// proposes a time entry at its first chance.
    pub fn lost_leadership(&mut self) {
        self.last_proposal = None;
    }

    /// Whether a leader idle since its last proposal should propose a time
    /// entry now, given how soon cluster time is needed.
    pub fn time_entry_due(&self, now: Instant, interval: Duration) -> bool {
        self.last_proposal
            .is_none_or(|t| now.saturating_since(t) >= interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant(Duration::from_millis(ms))
    }

    #[test]
    fn stamps_add_monotonic_time_since_the_apply() {
        // The node's monotonic clock reads 1_000_000 ms when it applies an
        // entry of cluster time 500: its own clock's origin does not matter.
        let mut c = ClusterClock::new(0, at(999_000));
        c.applied(500, at(1_000_000), false);
        assert_eq!(c.stamp(at(1_000_000)), 500);
        assert_eq!(c.stamp(at(1_000_250)), 750);
        // An entry that did not move cluster time does not restart the count.
        c.applied(400, at(1_000_300), false);
        assert_eq!(c.stamp(at(1_000_300)), 800);
        // A restored snapshot does.
        c.applied(400, at(1_000_300), true);
        assert_eq!(c.stamp(at(1_000_300)), 400);
    }

    #[test]
    fn a_time_entry_is_due_after_an_idle_interval() {
        let mut c = ClusterClock::new(0, at(0));
        assert!(c.time_entry_due(at(0), TIME_ENTRY_INTERVAL));
        c.proposed(at(100));
        assert!(!c.time_entry_due(at(349), TIME_ENTRY_INTERVAL));
        assert!(c.time_entry_due(at(350), TIME_ENTRY_INTERVAL));
        c.lost_leadership();
        assert!(c.time_entry_due(at(101), TIME_ENTRY_INTERVAL));
    }
}
