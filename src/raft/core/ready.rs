//! The effects of every input since the last call, handed over as one
//! `Ready` batch; committed entries pass the node-wide serving gate here.

use super::Raft;
use crate::raft::message::*;
use crate::raft::{Broken, HardState};

impl Raft {
    /// Takes the effects of every call since the last ready(). The
    /// previous `Ready` must have been advanced (`advance`): its hard state
    /// and entries are what this one builds on.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.unadvanced.is_none(),
            "Raft::ready called before the previous Ready was advanced"
        );
        if self.leader.as_ref().is_some_and(|l| l.pending_broadcast) {
            self.leader_mut().pending_broadcast = false;
            self.maybe_commit();
            for peer in self.peers() {
                self.send_append(peer, false);
            }
        }
        let hs = self.hard_state();
        let prev = self.persisted_hard_state;
        let hard_state = (hs != prev).then_some(hs);
        let vote_changed = (hs.term != prev.term || hs.voted_for != prev.voted_for)
            && self.cfg.broken != Broken::UnsyncedVote;
        self.persisted_hard_state = hs;
        // Node-wide, not only while leading: see `serve_after`.
        let gate_open = self.now >= self.serve_after
            || (self.cfg.broken == Broken::GateOnlyWhileLeader && self.leader.is_none());
        let committed = if gate_open {
            self.log.take_committed()
        } else {
            Vec::new()
        };
        let applied = self.log.applied();
        let snapshot_due = !self.snapshot_requested
            && applied.0 - self.log.snapshot_meta().last.index.0 >= self.cfg.snapshot_threshold;
        self.snapshot_requested |= snapshot_due;
        // A read confirmed while the gate was open waits with the entries
        // it needs when the gate has closed again since (this node stepped
        // down and won a new term that has an old lease to wait out).
        let (reads, later) = std::mem::take(&mut self.reads)
            .into_iter()
            .partition(|r| r.index <= applied);
        self.reads = later;
        let entries = self.log.take_unstable();
        let snapshot = self.log.take_snapshot_to_persist();
        let durable = Durable {
            term: hs.term,
            voted_for: hs.voted_for,
        };
        self.unadvanced = Some(durable);
        Ready {
            durable,
            must_sync: vote_changed || !entries.is_empty() || snapshot.is_some(),
            hard_state,
            entries,
            snapshot,
            messages: std::mem::take(&mut self.msgs),
            committed,
            reads,
            failed_reads: std::mem::take(&mut self.failed_reads),
            snapshot_due,
            events: std::mem::take(&mut self.events),
            released: self.log.take_released(),
        }
    }

    /// The caller made what the `Ready` that carried `durable` asked to
    /// persist durable (or wrote it unsynced, where it allowed that).
    pub fn advance(&mut self, durable: Durable) {
        assert_eq!(
            self.unadvanced.take(),
            Some(durable),
            "Raft::advance with another Ready's acknowledgement"
        );
        self.durable_vote = (durable.term, durable.voted_for);
    }

    /// Takes the queued heartbeats and heartbeat answers, which may leave
    /// while the last `Ready` is still being persisted, before the next
    /// ready(): they name no log position and the commit index a heartbeat
    /// carries is one the follower already acknowledged holding, so they
    /// depend on nothing still being written — unless our term or vote
    /// changed since the last durable `Ready`, in which case they wait.
    /// This keeps the lease renewed while a slow fsync runs on the leader or
    /// on its followers. Everything else stays queued
    /// for the next `Ready`, in its order.
    pub fn take_heartbeats(&mut self) -> Vec<Message> {
        if (self.term, self.voted_for) != self.durable_vote
            || self.cfg.broken == Broken::HeartbeatsWaitForSync
            || !self.msgs.iter().any(|m| is_heartbeat(&m.body))
        {
            return Vec::new();
        }
        let (beats, rest) = std::mem::take(&mut self.msgs)
            .into_iter()
            .partition(|m| is_heartbeat(&m.body));
        self.msgs = rest;
        beats
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.committed(),
        }
    }
}

fn is_heartbeat(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::Heartbeat { .. } | MessageBody::HeartbeatResponse { .. }
    )
}
