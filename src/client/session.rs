//! Client sessions for exactly-once writes: sequence numbers and the
//! `first_incomplete` watermark the state machine uses to forget answers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::pb;

/// Sequence bookkeeping of one session.
///
/// Invariant: every element of `in_flight` is `< next`; sequence numbers
/// start at 1 and are never reused.
#[derive(Debug)]
pub(crate) struct SeqTracker {
    next: u64,
    in_flight: BTreeSet<u64>,
}

impl SeqTracker {
    pub(crate) fn new() -> SeqTracker {
        SeqTracker {
            next: 1,
            in_flight: BTreeSet::new(),
        }
    }

    /// Allocates the sequence number of a new write.
    pub(crate) fn begin(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.in_flight.insert(seq);
        seq
    }

    /// The write `seq` has its final answer (or was given up): it will never
    /// be sent again.
    pub(crate) fn finish(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
    }

    /// Every write below this number has had its answer.
    pub(crate) fn first_incomplete(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }
}

/// A registered session: the id the cluster gave and its sequence numbers.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: u64,
    seqs: Mutex<SeqTracker>,
}

impl Session {
    pub(crate) fn new(client_id: u64) -> Arc<Session> {
        Arc::new(Session {
            client_id,
            seqs: Mutex::new(SeqTracker::new()),
        })
    }

    /// Starts a write; its sequence number is released when the guard drops
    /// (answered, failed or cancelled).
    pub(crate) fn begin(self: &Arc<Self>) -> SeqGuard {
        let seq = self.tracker().begin();
        SeqGuard {
            session: Arc::clone(self),
            seq,
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, SeqTracker> {
        // The tracker stays consistent even if a holder panicked.
        self.seqs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One write's sequence number, held for as long as it may be retried.
#[derive(Debug)]
pub(crate) struct SeqGuard {
    session: Arc<Session>,
    seq: u64,
}

impl SeqGuard {
    #[cfg(test)]
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The session header for one attempt; `first_incomplete` is read fresh
    /// so it advances as concurrent writes finish.
    pub(crate) fn header(&self) -> pb::Session {
        pb::Session {
            client_id: self.session.client_id,
            seq: self.seq,
            first_incomplete: self.session.tracker().first_incomplete(),
        }
    }
}

impl Drop for SeqGuard {
    fn drop(&mut self) {
        self.session.tracker().finish(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_start_at_one_and_increase() {
        let mut t = SeqTracker::new();
        assert_eq!(t.first_incomplete(), 1);
        assert_eq!(t.begin(), 1);
        assert_eq!(t.begin(), 2);
        t.finish(1);
        t.finish(2);
        assert_eq!(t.begin(), 3);
    }

    #[test]
    fn first_incomplete_is_the_oldest_write_in_flight() {
        let mut t = SeqTracker::new();
        let (a, b, c) = (t.begin(), t.begin(), t.begin());
        assert_eq!(t.first_incomplete(), a);
        t.finish(b);
        assert_eq!(t.first_incomplete(), a);
        t.finish(a);
        assert_eq!(t.first_incomplete(), c);
        t.finish(c);
        assert_eq!(t.first_incomplete(), 4);
    }

    #[test]
    fn guard_releases_on_drop_and_header_is_stable_per_write() {
        let session = Session::new(7);
        let first = session.begin();
        let second = session.begin();
        assert_eq!(
            second.header(),
            pb::Session {
                client_id: 7,
                seq: 2,
                first_incomplete: 1
            }
        );
        drop(first);
        // A retry of `second` carries the same seq, a newer watermark.
        assert_eq!(second.header().seq, 2);
        assert_eq!(second.header().first_incomplete, 2);
        assert_eq!(second.seq(), 2);
        drop(second);
        assert_eq!(session.begin().header().first_incomplete, 3);
    }
}
