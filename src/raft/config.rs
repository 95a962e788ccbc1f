//! Tuning of the consensus core. Every node of a cluster must use the same
//! election timeout, lease duration and drift bound: the lease argument
//! (docs/consensus.md) compares durations measured on different nodes.

use std::time::Duration;

use super::NodeId;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// T: election timeouts are drawn from [T, 2T); a node that heard from a
    /// live leader within T refuses to vote (leader stickiness).
    pub election_timeout: Duration,
    /// One heartbeat round (lease renewal) per interval.
    pub heartbeat_interval: Duration,
    /// L: a lease runs L × (1 − max_clock_drift) from the send time of the
    /// round a majority acknowledged; a leader that cannot renew within L steps down.
    pub lease_duration: Duration,
    /// ρ: the bound on how far any node's clock rate may differ from real time.
    pub max_clock_drift: f64,
    /// AppendEntries messages carrying entries in flight per follower.
    pub max_inflight: usize,
    pub max_batch_entries: usize,
    pub max_batch_bytes: usize,
    /// Entries applied since the last snapshot before the core asks for one.
    pub snapshot_threshold: u64,
    pub snapshot_chunk_bytes: usize,
    /// Seeds the election-timeout generator (the core has no other randomness).
    pub seed: u64,
    /// Deliberate bugs, only for proving that the simulator catches them.
    #[doc(hidden)]
    pub broken: Broken,
}

/// A deliberately broken variant of the protocol. The simulator's tests run
/// each one and assert that a safety check fails; production uses `None`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Broken {
    #[default]
    None,
    /// A new leader serves at once, ignoring the old leader's lease.
    IgnoreOldLease,
    /// The lease is timed from when the acknowledgement arrived, not from
    /// when the acknowledged round was sent.
    LeaseFromAck,
    /// Entries of earlier terms are committed by counting replicas.
    CommitOldTerm,
    /// A changed term or vote is written without an fsync, like the commit
    /// index: a crash can make a voter forget its vote.
    UnsyncedVote,
    /// The serving gate holds committed entries back only while the node
    /// leads: a new leader that steps down during its wait releases them at
    /// once, while the old lease may still serve reads without them.
    GateOnlyWhileLeader,
    /// Heartbeats and their answers wait for the sync under way like every
    /// other message: an fsync longer than the lease costs the leader its
    /// lease and its leadership.
    HeartbeatsWaitForSync,
}

impl Config {
    /// Defaults tuned for a LAN or one machine: failover well under a second.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            lease_duration: Duration::from_millis(250),
            max_clock_drift: 0.01,
            max_inflight: 64,
            max_batch_entries: 512,
            max_batch_bytes: 1 << 20,
            snapshot_threshold: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            seed: id.0,
            broken: Broken::None,
        }
    }

    /// The checks whose violation would make the lease unsafe or the node useless.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..0.5).contains(&self.max_clock_drift) {
            return Err(format!(
                "max_clock_drift must be in [0, 0.5), got {}",
                self.max_clock_drift
            ));
        }
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat interval must be positive".into());
        }
        if self.lease_duration <= self.heartbeat_interval {
            return Err(format!(
                "lease duration ({:?}) must be longer than the heartbeat interval ({:?})",
                self.lease_duration, self.heartbeat_interval
            ));
        }
        // Stickiness covers the old lease only if T ≥ L(1+ρ); the wait rule
        // keeps the lease safe anyway, but a shorter T just causes churn.
        if self.election_timeout.as_secs_f64()
            < self.lease_duration.as_secs_f64() * (1.0 + self.max_clock_drift)
        {
            return Err(format!(
                "election timeout ({:?}) must be at least the lease duration ({:?}) widened by the drift bound",
                self.election_timeout, self.lease_duration
            ));
        }
        if self.max_inflight == 0 || self.max_batch_entries == 0 || self.max_batch_bytes == 0 {
            return Err("inflight window and batch limits must be positive".into());
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err("snapshot chunk size must be positive".into());
        }
        Ok(())
    }

    /// How long the lease is held after the acknowledged round was sent.
    pub(crate) fn lease_hold(&self) -> Duration {
        self.lease_duration.mul_f64(1.0 - self.max_clock_drift)
    }

    /// How long, at least, a follower whose connection to its leader broke
    /// waits to hear from it again before it starts a pre-vote (the core
    /// adds up to half of it at random): two heartbeat intervals, time for
    /// a live leader to reconnect and send its next heartbeat. With the
    /// defaults (100–150 ms) shorter than the old lease a new leader must
    /// wait out anyway (L(1 + ρ) from the last contact), so waiting it
    /// costs a failover little or nothing.
    pub(crate) fn connection_grace(&self) -> Duration {
        (self.heartbeat_interval * 2).min(self.election_timeout)
    }

    /// How long after a broken connection a message of the leader may
    /// still be one it sent before (it comes on another connection):
    /// half a heartbeat interval. Such a message does not prove the
    /// leader alive.
    pub(crate) fn connection_settle(&self) -> Duration {
        self.heartbeat_interval / 2
    }

    /// How long a voter whose connection to its leader broke must not have
    /// heard from it before it stops counting it as live (stickiness):
    /// one and a half heartbeat intervals — a live leader heartbeats
    /// within one — and less than the grace after which the other
    /// followers campaign.
    pub(crate) fn lost_leader_silence(&self) -> Duration {
        self.heartbeat_interval.mul_f64(1.5)
    }

    /// How much of an old leader's lease may still run, seen from a voter
    /// that last heard from it `since` ago on its own clock (widened so that
    /// the new leader, whose clock may also drift, can wait it out on its own clock).
    pub(crate) fn old_lease_bound(&self, since: Duration) -> Duration {
        self.lease_duration
            .mul_f64(1.0 + self.max_clock_drift)
            .saturating_sub(since)
    }
}
