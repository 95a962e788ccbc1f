//! The leader lease (docs/consensus.md, "The leader lease"): heartbeat
//! rounds, renewal when a majority acknowledges a round, and the leader's
//! timer, which steps down when the lease was not renewed within L.

use std::time::Duration;

use super::Raft;
use crate::raft::message::*;
use crate::raft::progress::ReplState;
use crate::raft::{Broken, Instant, NodeId, Term};

impl Raft {
    /// Some(time left) while this node holds a lease it may serve reads from.
    pub fn lease_remaining(&self, now: Instant) -> Option<Duration> {
        let l = self.leader.as_ref()?;
        if l.lease_revoked || now < self.serve_after {
            return None;
        }
        let expiry = l.lease_expiry?;
        (now < expiry).then(|| expiry.saturating_since(now))
    }

    pub(super) fn tick_leader(&mut self) {
        let now = self.now;
        let l = self.leader_ref();
        if now.saturating_since(l.last_quorum_contact) >= self.cfg.lease_duration {
            self.events.push(Event::SteppedDown {
                term: self.term,
                reason: "lease not renewed by a majority",
            });
            self.become_follower(self.term, None);
            return;
        }
        if let Some(t) = &l.transfer
            && now >= t.deadline
        {
            let to = t.to;
            let sent = t.sent;
            let l = self.leader_mut();
            l.transfer = None;
            // Once TimeoutNow left, the successor may skip the wait: never
            // take the lease back in this term.
            l.lease_revoked = sent;
            self.events.push(Event::TransferAborted { to });
        }
        if now >= self.leader_ref().next_heartbeat {
            self.leader_mut().next_heartbeat = now + self.cfg.heartbeat_interval;
            self.start_round();
        }
        self.process_reads();
    }

    /// Starts a heartbeat round: every follower hears from us, and a majority
    /// acknowledging renews the lease from this instant.
    pub(super) fn start_round(&mut self) {
        let now = self.now;
        let l = self.leader_mut();
        l.round += 1;
        let round = l.round;
        l.round_starts.push_back((round, now));
        for p in l.progress.values_mut() {
            if let ReplState::Probe { waiting } = &mut p.state {
                *waiting = false;
            }
            if let ReplState::Snapshot { waiting, .. } = &mut p.state {
                *waiting = false;
            }
        }
        let committed = self.log.committed();
        for peer in self.peers() {
            let matched = self.leader_ref().progress[&peer].match_index;
            let commit = committed.min(matched);
            self.send(peer, MessageBody::Heartbeat { commit, round });
            self.send_append(peer, true);
        }
        self.update_lease();
    }

    pub(super) fn on_heartbeat_response(&mut self, from: NodeId, term: Term, round: u64) {
        if term != self.term {
            return;
        }
        let Some(p) = self.leader.as_mut().and_then(|l| l.progress.get_mut(&from)) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        self.update_lease();
    }

    pub(super) fn update_lease(&mut self) {
        let self_voter = self.is_voter();
        let id = self.cfg.id;
        let hold = self.cfg.lease_hold();
        let (broken, now) = (self.cfg.broken, self.now);
        // Borrow the membership and the leader state side by side: this runs
        // on every acknowledgement, so no copy of the voter set.
        let membership = self.log.membership();
        let quorum = membership.quorum();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let mut rounds: Vec<u64> = membership
            .voters
            .iter()
            .map(|v| {
                if *v == id {
                    if self_voter { l.round } else { 0 }
                } else {
                    l.progress.get(v).map_or(0, |p| p.acked_round)
                }
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let majority_round = rounds.get(quorum - 1).copied().unwrap_or(0);
        if majority_round <= l.acked_round {
            return;
        }
        let mut start = None;
        while let Some(&(r, t)) = l.round_starts.front() {
            if r > majority_round {
                break;
            }
            start = Some(t);
            l.round_starts.pop_front();
        }
        l.acked_round = majority_round;
        let start = if broken == Broken::LeaseFromAck {
            start.map(|_| now)
        } else {
            start
        };
        if let Some(t) = start {
            l.last_quorum_contact = t;
            l.lease_expiry = Some(t + hold);
        }
        self.process_reads();
    }
}
