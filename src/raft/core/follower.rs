//! A follower's side of replication: accepting a leader and its appends.

use rand::Rng;
use std::time::Duration;

use super::Raft;
use crate::raft::message::*;
use crate::raft::{Entry, Instant, LogId, LogIndex, NodeId, Term};

impl Raft {
    pub(super) fn accept_leader(&mut self, from: NodeId, term: Term) {
        if self.role != self.follower_role() || self.leader_id != Some(from) {
            self.leader_id = Some(from);
            self.leader_lost_at = None;
            self.ballots.clear();
            self.released_term = None;
            self.set_role(self.follower_role());
        }
        // A message that arrives just after the connection broke may have
        // been sent before: the leader's messages come on its own
        // connection, the loss is seen on ours, in no fixed order. It
        // counts as contact (for the lease bound we report) but neither
        // proves the leader alive nor cancels the early campaign.
        let in_flight = self
            .leader_lost_at
            .is_some_and(|t| self.now.saturating_since(t) < self.cfg.connection_settle());
        if !in_flight {
            self.leader_lost_at = None;
            self.reset_election_deadline();
        }
        self.last_leader_contact = self.now;
        self.contact_term = term;
    }

    /// The driver's input: the connection to `peer` broke — reset or closed
    /// by the other end, as the kernel does for a process that died — which
    /// a slow link never does (docs/consensus.md, "Failover on a broken
    /// connection"). If `peer` is the leader this node follows, the leader
    /// stops counting as live for stickiness and the election deadline
    /// moves to 1 to 1.5 × `connection_grace` from now: a live leader (the connection
    /// of a proxy was reset) is heard again within it and nothing happens;
    /// a dead one is not, and this node starts a pre-vote long before its
    /// election timeout. The pre-vote changes no term and is granted only
    /// by voters that do not hear the leader either, so a broken connection
    /// alone never deposes a live leader. Any other peer: no effect.
    pub fn connection_lost(&mut self, peer: NodeId, now: Instant) {
        self.advance_clock(now);
        if self.leader.is_none()
            && self.leader_id == Some(peer)
            && peer != self.cfg.id
            && self.leader_lost_at.is_none()
        {
            self.leader_lost_at = Some(self.now);
            // Randomized like an election timeout, so that the followers
            // of a dead leader rarely campaign at the same instant.
            let grace = self.cfg.connection_grace();
            let jitter = self
                .rng
                .random_range(0..(grace.as_nanos() as u64 / 2).max(1));
            let early = self.now + grace + Duration::from_nanos(jitter);
            if self.is_voter() && early < self.election_deadline {
                self.election_deadline = early;
            }
            self.events
                .push(Event::LeaderConnectionLost { leader: peer });
        }
        self.after_input();
    }

    pub(super) fn on_append(
        &mut self,
        from: NodeId,
        term: Term,
        prev: LogId,
        entries: Vec<Entry>,
        commit: LogIndex,
        round: u64,
    ) {
        debug_assert!(self.leader.is_none(), "validate drops a second leader");
        if self.log.overwrites_committed(&entries) {
            // A correct leader holds every committed entry (§5.4): this one
            // does not, or the message is corrupt. Never undo a commit.
            self.events.push(Event::MessageDropped {
                from,
                kind: "append",
                reason: "would overwrite a committed entry",
            });
            return;
        }
        self.accept_leader(from, term);
        let reply = match self.log.try_append(prev, entries) {
            Ok(matched) => {
                self.log.commit_to(commit.min(matched));
                MessageBody::AppendResponse {
                    success: true,
                    match_index: matched,
                    conflict: LogId::default(),
                    round,
                }
            }
            Err(conflict) => MessageBody::AppendResponse {
                success: false,
                match_index: LogIndex(0),
                conflict: conflict.0,
                round,
            },
        };
        self.send(from, reply);
    }

    /// A heartbeat: the leader's contact (the basis of the lease bound this
    /// node reports when it votes) and its commit index, which the leader
    /// capped at what we acknowledged holding. The answer names nothing of
    /// our log, so it may leave before a write of ours is durable.
    pub(super) fn on_heartbeat(&mut self, from: NodeId, term: Term, commit: LogIndex, round: u64) {
        debug_assert!(self.leader.is_none(), "validate drops a second leader");
        self.accept_leader(from, term);
        self.log.commit_to(commit);
        self.send(from, MessageBody::HeartbeatResponse { round });
    }
}
