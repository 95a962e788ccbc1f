//! The core's two inputs from outside, `tick` and `step`: every message is
//! validated, compared by term (newer: follow or stay put; older: answer
//! with our term) and dispatched to the handler of its kind.

use std::time::Duration;

use super::Raft;
use super::election::Ballot;
use crate::raft::message::*;
use crate::raft::validate;
use crate::raft::{Instant, LogId, LogIndex, Term};

impl Raft {
    pub fn tick(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.leader.is_some() {
            self.tick_leader();
        } else if self.is_voter() && now >= self.election_deadline {
            self.start_pre_vote();
        }
        self.after_input();
    }

    pub fn step(&mut self, msg: Message, now: Instant) {
        self.advance_clock(now);
        if msg.to != self.cfg.id {
            return;
        }
        if let Err(reason) = validate::check(&msg, &self.as_receiver()) {
            self.events.push(Event::MessageDropped {
                from: msg.from,
                kind: msg.body.kind(),
                reason,
            });
            return;
        }
        self.step_message(msg);
        self.after_input();
    }

    /// What `validate::check` needs to know about this node.
    fn as_receiver(&self) -> validate::Receiver {
        validate::Receiver {
            id: self.cfg.id,
            term: self.term,
            max_lease_report: self.cfg.old_lease_bound(Duration::ZERO),
            leader: self.leader.as_ref().map(|l| validate::LeaderView {
                last_index: self.log.last_index(),
                snapshot_index: self.log.snapshot_meta().last.index,
                round: l.round,
            }),
        }
    }

    fn step_message(&mut self, msg: Message) {
        use MessageBody::*;
        if msg.term > self.term {
            let leaderless = matches!(msg.body, Vote { .. });
            let keeps_term = match &msg.body {
                Vote { pre_vote: true, .. } => true,
                VoteResponse {
                    pre_vote: true,
                    granted: true,
                    ..
                } => true,
                Vote { transfer, .. } => self.is_sticky(*transfer),
                _ => false,
            };
            if !keeps_term {
                let leader = (!leaderless
                    && matches!(
                        msg.body,
                        Append { .. } | Heartbeat { .. } | Snapshot { .. } | TimeoutNow { .. }
                    ))
                .then_some(msg.from);
                self.become_follower(msg.term, leader);
            }
        } else if msg.term < self.term {
            match msg.body {
                // Tell a stale leader (or a stale candidate) about the newer term.
                Append { .. } | Heartbeat { .. } | Snapshot { .. } => self.send(
                    msg.from,
                    AppendResponse {
                        success: false,
                        match_index: LogIndex(0),
                        conflict: LogId::default(),
                        round: 0,
                    },
                ),
                Vote { pre_vote, .. } => self.send(
                    msg.from,
                    VoteResponse {
                        granted: false,
                        pre_vote,
                        lease_remaining: Duration::ZERO,
                        lease_term: Term(0),
                    },
                ),
                _ => {}
            }
            return;
        }
        match msg.body {
            Append {
                prev,
                entries,
                commit,
                round,
            } => self.on_append(msg.from, msg.term, prev, entries, commit, round),
            Heartbeat { commit, round } => self.on_heartbeat(msg.from, msg.term, commit, round),
            HeartbeatResponse { round } => self.on_heartbeat_response(msg.from, msg.term, round),
            AppendResponse {
                success,
                match_index,
                conflict,
                round,
            } => self.on_append_response(msg.from, msg.term, success, match_index, conflict, round),
            Vote {
                last_log,
                pre_vote,
                transfer,
            } => self.on_vote(msg.from, msg.term, last_log, pre_vote, transfer),
            VoteResponse {
                granted,
                pre_vote,
                lease_remaining,
                lease_term,
            } => self.on_vote_response(
                msg.from,
                msg.term,
                pre_vote,
                Ballot {
                    granted,
                    lease_remaining,
                    lease_term,
                },
            ),
            Snapshot {
                meta,
                offset,
                data,
                done,
                round,
            } => self.on_snapshot(msg.from, msg.term, meta, offset, data, done, round),
            SnapshotResponse {
                last_index,
                next_offset,
                done,
                round,
            } => {
                self.on_snapshot_response(msg.from, msg.term, last_index, next_offset, done, round)
            }
            TimeoutNow { lease_released } => {
                self.on_timeout_now(msg.from, msg.term, lease_released)
            }
        }
    }
}
