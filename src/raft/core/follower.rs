//! A follower's side of replication: accepting a leader and its appends.

use super::Raft;
use crate::raft::message::*;
use crate::raft::{Entry, LogId, LogIndex, NodeId, Term};

impl Raft {
    pub(super) fn accept_leader(&mut self, from: NodeId, term: Term) {
        if self.role != self.follower_role() || self.leader_id != Some(from) {
            self.leader_id = Some(from);
            self.ballots.clear();
            self.released_term = None;
            self.set_role(self.follower_role());
        }
        self.last_leader_contact = self.now;
        self.contact_term = term;
        self.reset_election_deadline();
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
