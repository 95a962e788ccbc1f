//! Peer round trips (docs/observability.md, "Peer round trips"): the time
//! from a leader's heartbeat to a peer, stamped when the node loop hands it
//! to the transport, to that peer's answer to the same round, stamped when
//! it reaches this node's inbox. It covers the transport's queue, the
//! network both ways and the peer's loop, which is what a slow peer delays;
//! not this node's own loop, which has its own histograms.

use crate::raft::{Message, MessageBody, NodeId};
use prometheus::HistogramVec;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// Unanswered rounds remembered per peer; older ones are forgotten (a
/// peer that is down never answers, and its rounds must not pile up).
const PENDING_PER_PEER: usize = 64;

/// A heartbeat sent and not yet answered: (term, round, sent at).
type Unanswered = (u64, u64, Instant);

/// Heartbeats sent and not yet answered, per peer.
pub struct RoundTrips {
    pending: Mutex<HashMap<NodeId, VecDeque<Unanswered>>>,
    histogram: HistogramVec,
}

impl RoundTrips {
    pub(super) fn new(histogram: HistogramVec) -> RoundTrips {
        RoundTrips {
            pending: Mutex::default(),
            histogram,
        }
    }

    /// Notes a message handed to the transport (only heartbeats count).
    pub fn sent(&self, m: &Message) {
        let MessageBody::Heartbeat { round, .. } = m.body else {
            return;
        };
        self.sent_at(m.to, m.term.0, round, Instant::now());
    }

    fn sent_at(&self, to: NodeId, term: u64, round: u64, at: Instant) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let q = pending.entry(to).or_default();
        if q.len() == PENDING_PER_PEER {
            q.pop_front();
        }
        q.push_back((term, round, at));
    }

    /// Notes a peer's message that reached the inbox at `at`: an answer
    /// to a heartbeat round sent from here is observed under its sender.
    pub fn received(&self, m: &Message, at: Instant) {
        let MessageBody::HeartbeatResponse { round } = m.body else {
            return;
        };
        if let Some(took) = self.answered(m.from, m.term.0, round, at) {
            self.histogram
                .with_label_values(&[&m.from.0.to_string()])
                .observe(took);
        }
    }

    /// Seconds since round (`term`, `round`) was sent to `from`, if it was
    /// and was not answered yet; forgets it and every earlier round.
    fn answered(&self, from: NodeId, term: u64, round: u64, at: Instant) -> Option<f64> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let q = pending.get_mut(&from)?;
        let pos = q.iter().position(|&(t, r, _)| (t, r) == (term, round))?;
        let sent = q[pos].2;
        q.drain(..=pos);
        Some(at.saturating_duration_since(sent).as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{LogIndex, Term};
    use prometheus::HistogramOpts;
    use std::time::Duration;

    fn trips() -> RoundTrips {
        let opts = HistogramOpts::new("rtt", "rtt");
        RoundTrips::new(HistogramVec::new(opts, &["peer"]).unwrap())
    }

    fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body,
        }
    }

    #[test]
    fn a_heartbeat_and_its_answer_are_one_round_trip() {
        let t = trips();
        let beat = MessageBody::Heartbeat {
            commit: LogIndex(0),
            round: 7,
        };
        t.sent(&msg(1, 2, 3, beat));
        let answer = MessageBody::HeartbeatResponse { round: 7 };
        let later = Instant::now() + Duration::from_millis(5);
        t.received(&msg(2, 1, 3, answer.clone()), later);
        let h = t.histogram.with_label_values(&["2"]);
        assert_eq!(h.get_sample_count(), 1);
        assert!(h.get_sample_sum() >= 0.005, "{}", h.get_sample_sum());
        // Answered once only; another term's round 7 is not this one.
        t.received(&msg(2, 1, 3, answer.clone()), later);
        t.sent(&msg(
            1,
            2,
            4,
            MessageBody::Heartbeat {
                commit: LogIndex(0),
                round: 7,
            },
        ));
        t.received(&msg(2, 1, 5, answer), later);
        assert_eq!(h.get_sample_count(), 1);
    }

    #[test]
    fn an_answer_forgets_earlier_rounds_and_a_silent_peer_is_bounded() {
        let t = trips();
        let now = Instant::now();
        for round in 1..=200 {
            t.sent_at(NodeId(2), 1, round, now);
        }
        assert_eq!(
            t.pending.lock().unwrap()[&NodeId(2)].len(),
            PENDING_PER_PEER
        );
        assert!(t.answered(NodeId(2), 1, 100, now).is_none(), "forgotten");
        assert!(t.answered(NodeId(2), 1, 150, now).is_some());
        assert_eq!(t.pending.lock().unwrap()[&NodeId(2)].len(), 50);
        assert!(t.answered(NodeId(2), 1, 149, now).is_none());
        assert!(t.answered(NodeId(3), 1, 151, now).is_none());
    }
}
