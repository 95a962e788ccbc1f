//! The state only a leader has, proposals, and the commit rule (only an
//! entry of the leader's own term is committed by counting, §5.4.2).

use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

use super::Raft;
use super::read::PendingRead;
use super::transfer::Transfer;
use crate::raft::message::*;
use crate::raft::progress::Progress;
use crate::raft::{Broken, Instant, LogId, LogIndex, NodeId, Payload};

/// Everything only a leader has.
#[derive(Debug)]
pub(super) struct Leader {
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Current heartbeat round; every message carries it.
    pub(super) round: u64,
    /// Send times of rounds not yet acknowledged by a majority.
    pub(super) round_starts: VecDeque<(u64, Instant)>,
    /// Highest round a majority acknowledged.
    pub(super) acked_round: u64,
    /// Send time of `acked_round` (election time before the first): the
    /// leader steps down when this is older than L.
    pub(super) last_quorum_contact: Instant,
    /// The lease, once a round was acknowledged: valid until this instant.
    pub(super) lease_expiry: Option<Instant>,
    /// Given up for a leadership transfer.
    pub(super) lease_revoked: bool,
    pub(super) next_heartbeat: Instant,
    pub(super) transfer: Option<Transfer>,
    pub(super) pending_reads: VecDeque<PendingRead>,
    /// Proposals appended since the last ready(): replicate them then, in one batch.
    pub(super) pending_broadcast: bool,
}

impl Raft {
    pub fn propose(&mut self, command: Bytes, now: Instant) -> Result<LogId, ProposeError> {
        self.advance_clock(now);
        self.check_accepting()?;
        let id = self.log.append(self.term, Payload::Command(command));
        self.leader_mut().pending_broadcast = true;
        Ok(id)
    }

    pub(super) fn maybe_commit(&mut self) {
        let id = self.cfg.id;
        let m = self.log.membership();
        let last = self.log.last_index();
        let l = self.leader_ref();
        let mut matches: Vec<LogIndex> = m
            .voters
            .iter()
            .map(|v| {
                if *v == id {
                    last
                } else {
                    l.progress.get(v).map_or(LogIndex(0), |p| p.match_index)
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[m.quorum() - 1];
        // Only an entry of the leader's own term is committed by counting (§5.4.2).
        let own_term = self.log.term_at(candidate) == Some(self.term);
        if candidate > self.log.committed()
            && (own_term || self.cfg.broken == Broken::CommitOldTerm)
        {
            self.log.commit_to(candidate);
            self.process_reads();
            self.maybe_hand_off_after_removal();
        }
    }
}
