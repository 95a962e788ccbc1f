//! The leader's replication to each follower (probe, replicate, snapshot;
//! see `progress.rs`) and the followers' answers to it.

use super::Raft;
use crate::raft::log::RaftLog;
use crate::raft::message::*;
use crate::raft::progress::ReplState;
use crate::raft::{Entry, LogId, LogIndex, NodeId, Term};

impl Raft {
    /// Sends what `peer` needs: a snapshot chunk, a probe, a window of
    /// entries, or (for a heartbeat) at least an empty AppendEntries.
    pub(super) fn send_append(&mut self, peer: NodeId, heartbeat: bool) {
        let (max_inflight, max_entries, max_bytes) = (
            self.cfg.max_inflight,
            self.cfg.max_batch_entries,
            self.cfg.max_batch_bytes,
        );
        let last = self.log.last_index();
        let commit = self.log.committed();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let round = l.round;
        let Some(p) = l.progress.get_mut(&peer) else {
            return;
        };
        if heartbeat && p.state == ReplState::Replicate && p.inflight.len() >= max_inflight {
            // Window full for a whole round: assume loss and probe again.
            p.back_up(p.match_index.next());
        }
        if p.next_index > last.next() {
            // Beyond our log: only a bad hint could put it there.
            p.back_up(last.next());
        }
        if !matches!(p.state, ReplState::Snapshot { .. })
            && self.log.term_at(p.next_index.prev()).is_none()
        {
            p.start_snapshot();
        }
        let mut out = Vec::new();
        match p.state {
            ReplState::Snapshot { offset, waiting } => {
                if waiting && !heartbeat {
                    return;
                }
                let Some(snap) = self.log.snapshot() else {
                    // Unreachable: next_index is within the log, and below
                    // its first entry only after a compaction.
                    p.back_up(last.next());
                    return;
                };
                let start = (offset as usize).min(snap.data.len());
                let end = (start + self.cfg.snapshot_chunk_bytes).min(snap.data.len());
                p.state = ReplState::Snapshot {
                    offset,
                    waiting: true,
                };
                out.push(MessageBody::Snapshot {
                    meta: snap.meta.clone(),
                    offset: start as u64,
                    data: snap.data.slice(start..end),
                    done: end == snap.data.len(),
                    round,
                });
            }
            ReplState::Probe { waiting } => {
                if waiting && !heartbeat {
                    return;
                }
                let prev_index = p.next_index.prev();
                let entries = self
                    .log
                    .slice(p.next_index, max_entries, max_bytes)
                    .unwrap_or_default();
                p.state = ReplState::Probe { waiting: true };
                out.push(append_body(&self.log, prev_index, entries, commit, round));
            }
            ReplState::Replicate => {
                while p.inflight.len() < max_inflight && p.next_index <= last {
                    let Some(entries) = self.log.slice(p.next_index, max_entries, max_bytes) else {
                        break;
                    };
                    let prev_index = p.next_index.prev();
                    let sent_last = LogIndex(prev_index.0 + entries.len() as u64);
                    p.inflight.push_back(sent_last);
                    p.next_index = sent_last.next();
                    out.push(append_body(&self.log, prev_index, entries, commit, round));
                }
                // A follower that holds our whole log hears the round from
                // the heartbeat alone; one that lacks some of it also gets
                // an empty append, whose rejection backs us up if what we
                // sent it was lost.
                if out.is_empty() && heartbeat && p.match_index < last {
                    out.push(append_body(
                        &self.log,
                        p.next_index.prev(),
                        Vec::new(),
                        commit,
                        round,
                    ));
                }
            }
        }
        for body in out {
            self.send(peer, body);
        }
    }

    pub(super) fn on_append_response(
        &mut self,
        from: NodeId,
        term: Term,
        success: bool,
        match_index: LogIndex,
        conflict: LogId,
        round: u64,
    ) {
        if self.leader.is_none() || term != self.term {
            return;
        }
        let last = self.log.last_index();
        let first = self.log.first_index();
        let Some(p) = self.leader_mut().progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        if matches!(p.state, ReplState::Snapshot { .. }) {
            // An acknowledgement of an append sent before the snapshot. It
            // is true: a follower never drops a log that holds the
            // snapshot's last entry, so what it acknowledged stays. If it
            // reaches our log, the snapshot is no longer needed.
            if success && match_index <= last && p.acknowledge(match_index) {
                if match_index.next() >= first {
                    p.resume_replication();
                }
                self.maybe_commit();
                self.maybe_send_timeout_now();
                self.send_append(from, false);
            }
        } else if success {
            if match_index > last {
                return; // impossible from an honest follower
            }
            if p.acknowledge(match_index) {
                self.maybe_commit();
                self.maybe_send_timeout_now();
            }
            self.send_append(from, false);
        } else {
            let next = if conflict.term > Term(0) {
                // Skip the follower's whole conflicting term at once (§5.3).
                match self.log.last_index_of_term(conflict.term) {
                    Some(i) => i.next(),
                    None => conflict.index,
                }
            } else {
                conflict.index
            };
            let p = self.leader_mut().progress.get_mut(&from).expect("checked");
            p.back_up(next.max(LogIndex(1)));
            self.send_append(from, false);
        }
        self.update_lease();
    }
}

fn append_body(
    log: &RaftLog,
    prev_index: LogIndex,
    entries: Vec<Entry>,
    commit: LogIndex,
    round: u64,
) -> MessageBody {
    let prev = LogId {
        term: log.term_at(prev_index).expect("prev entry is in the log"),
        index: prev_index,
    };
    let sent_last = LogIndex(prev_index.0 + entries.len() as u64);
    MessageBody::Append {
        prev,
        entries,
        commit: commit.min(sent_last),
        round,
    }
}
