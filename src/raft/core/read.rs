//! Linearizable reads: at once under a valid lease, otherwise by ReadIndex
//! (a heartbeat round a majority must acknowledge).

use std::collections::VecDeque;

use super::Raft;
use crate::raft::message::*;
use crate::raft::{Instant, LogIndex};

#[derive(Debug)]
pub(super) struct PendingRead {
    pub(super) id: u64,
    /// ReadIndex: the round whose majority acknowledgement confirms leadership.
    pub(super) round: Option<u64>,
    pub(super) index: LogIndex,
}

impl Raft {
    /// Registers a linearizable read; it comes back in `Ready.reads` (or
    /// `failed_reads`) once it may be answered from the applied state.
    pub fn read(&mut self, id: u64, now: Instant) -> Result<(), ProposeError> {
        self.advance_clock(now);
        if self.leader.is_none() {
            return Err(self.not_leader());
        }
        self.leader_mut().pending_reads.push_back(PendingRead {
            id,
            round: None,
            index: LogIndex(0),
        });
        self.process_reads();
        Ok(())
    }

    pub(super) fn process_reads(&mut self) {
        let now = self.now;
        let committed = self.log.committed();
        let own_term_committed = self.log.term_at(committed) == Some(self.term);
        let lease = self.lease_remaining(now).is_some();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if now < self.serve_after || !own_term_committed || l.pending_reads.is_empty() {
            return;
        }
        let mut need_round = false;
        let next_round = l.round + 1;
        let acked = l.acked_round;
        let mut still = VecDeque::new();
        for mut r in l.pending_reads.drain(..) {
            match r.round {
                None if lease => self.reads.push(ReadState {
                    id: r.id,
                    index: committed,
                }),
                None => {
                    r.round = Some(next_round);
                    r.index = committed;
                    need_round = true;
                    still.push_back(r);
                }
                Some(round) if acked >= round => self.reads.push(ReadState {
                    id: r.id,
                    index: r.index,
                }),
                Some(_) => still.push_back(r),
            }
        }
        l.pending_reads = still;
        if need_round {
            self.start_round();
        }
    }
}
