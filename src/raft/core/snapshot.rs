//! Snapshots: compacting the log, the leader's view of a follower receiving
//! one, and a follower installing one (or keeping a log that already holds
//! its last entry: docs/consensus.md, "Snapshots").

use bytes::{Bytes, BytesMut};

use super::Raft;
use crate::raft::message::*;
use crate::raft::progress::ReplState;
use crate::raft::{LogIndex, NodeId, Snapshot, SnapshotMeta, Term};

impl Raft {
    /// The caller snapshotted its state machine at `index` (applied):
    /// compact the log and remember the snapshot for lagging followers.
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Snapshot {
        let snap = self.log.compact(index, data);
        self.snapshot_requested = false;
        self.events.push(Event::LogCompacted {
            last: snap.meta.last,
        });
        snap
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
        round: u64,
    ) {
        debug_assert!(self.leader.is_none(), "validate drops a second leader");
        self.accept_leader(from, term);
        let last_index = meta.last.index;
        let reply = |next_offset, done| MessageBody::SnapshotResponse {
            last_index,
            next_offset,
            done,
            round,
        };
        if last_index <= self.log.committed() {
            // Everything it covers is already committed here.
            self.receiving_snapshot = None;
            self.send(from, reply(0, true));
            return;
        }
        if self.log.term_at(last_index) == Some(meta.last.term) {
            // Our log holds the snapshot's last entry: it holds everything
            // the snapshot covers, and what follows may already have been
            // acknowledged to this leader (and counted for a commit).
            // Keep it and only move the commit index (etcd-io/raft's
            // `restore` does the same).
            self.receiving_snapshot = None;
            self.log.commit_to(last_index);
            self.send(from, reply(0, true));
            return;
        }
        if offset == 0 {
            self.receiving_snapshot = Some((meta.clone(), BytesMut::new()));
        }
        let expected = match &self.receiving_snapshot {
            Some((m, buf)) if *m == meta => buf.len() as u64,
            _ => 0,
        };
        if offset != expected || self.receiving_snapshot.is_none() {
            self.send(from, reply(expected, false));
            return;
        }
        let (_, buf) = self.receiving_snapshot.as_mut().expect("checked");
        buf.extend_from_slice(&data);
        let received = buf.len() as u64;
        if !done {
            self.send(from, reply(received, false));
            return;
        }
        let (meta, buf) = self.receiving_snapshot.take().expect("checked");
        let last = meta.last;
        self.log.install(Snapshot {
            meta,
            data: buf.freeze(),
        });
        self.snapshot_requested = false;
        self.events.push(Event::SnapshotInstalled { last });
        self.send(from, reply(received, true));
    }

    pub(super) fn on_snapshot_response(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
        round: u64,
    ) {
        if self.leader.is_none() || term != self.term {
            return;
        }
        let current = self.log.snapshot_meta().last.index;
        let Some(p) = self.leader_mut().progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        if let ReplState::Snapshot { .. } = p.state {
            if done {
                p.state = ReplState::Probe { waiting: false };
                p.next_index = p.next_index.max(last_index.next());
                if p.acknowledge(last_index) {
                    self.maybe_commit();
                }
            } else if last_index == current {
                p.state = ReplState::Snapshot {
                    offset: next_offset,
                    waiting: false,
                };
            } else {
                p.start_snapshot();
            }
            self.send_append(from, false);
        }
        self.update_lease();
    }
}
