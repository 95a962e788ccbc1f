//! The leader's view of one follower's replication.

use std::collections::VecDeque;

use super::LogIndex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplState {
    /// Unknown match: one AppendEntries at a time until one succeeds.
    Probe { waiting: bool },
    /// Known match: entries streamed optimistically within the window.
    Replicate,
    /// The follower needs the snapshot; `offset` is the next chunk.
    Snapshot { offset: u64, waiting: bool },
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    // Invariant: match_index < next_index
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ReplState,
    /// Last index of each AppendEntries in flight (Replicate only).
    pub inflight: VecDeque<LogIndex>,
    /// Highest heartbeat round this follower acknowledged.
    pub acked_round: u64,
}

impl Progress {
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ReplState::Probe { waiting: false },
            inflight: VecDeque::new(),
            acked_round: 0,
        }
    }

    /// Record a successful append up to `index`; true if the match advanced.
    pub fn acknowledge(&mut self, index: LogIndex) -> bool {
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index.next());
        match self.state {
            ReplState::Probe { .. } => {
                self.state = ReplState::Replicate;
            }
            ReplState::Snapshot { .. } | ReplState::Replicate => {}
        }
        advanced
    }

    /// The follower's log does not match at `next_index - 1`: probe from `next`.
    pub fn back_up(&mut self, next: LogIndex) {
        self.next_index = next.max(self.match_index.next());
        self.inflight.clear();
        self.state = ReplState::Probe { waiting: false };
    }

    /// Leaves snapshot mode: the follower acknowledged an entry the log
    /// still holds, so it can be replicated to from there.
    pub fn resume_replication(&mut self) {
        self.next_index = self.match_index.next();
        self.inflight.clear();
        self.state = ReplState::Replicate;
    }

    pub fn start_snapshot(&mut self) {
        self.inflight.clear();
        self.state = ReplState::Snapshot {
            offset: 0,
            waiting: false,
        };
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            ReplState::Probe { .. } => "probe",
            ReplState::Replicate => "replicate",
            ReplState::Snapshot { .. } => "snapshot",
        }
    }
}
