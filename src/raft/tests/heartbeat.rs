//! Heartbeats and their answers leave while a `Ready` is being synced: they
//! depend on nothing still being written, and so keep the lease through
//! slow fsyncs.

use super::*;

const N2: NodeId = NodeId(2);

fn beats(msgs: &[Message]) -> Vec<(NodeId, &'static str)> {
    msgs.iter().map(|m| (m.to, m.body.kind())).collect()
}

fn beat(commit: u64, round: u64) -> MessageBody {
    MessageBody::Heartbeat {
        commit: LogIndex(commit),
        round,
    }
}

/// n0 leads term 2 with its term durable (its `Ready`s advanced).
fn settled_leader() -> Raft {
    let mut r = leader(Duration::ZERO);
    settled(&mut r);
    r
}

/// A round started while the leader's own sync runs sends its heartbeats
/// at once; the appends carrying entries not yet durable wait for the next
/// `Ready`. A majority answering renews the lease from the round's start.
#[test]
fn a_leader_sends_heartbeats_during_its_sync_and_holds_entries_back() {
    let mut r = settled_leader();
    r.propose(Bytes::from_static(b"x"), at(1010))
        .expect("leader");
    let syncing = r.ready();
    assert_eq!(syncing.entries.len(), 1, "x is being written");
    r.tick(at(1050));
    let early = r.take_heartbeats();
    assert_eq!(beats(&early), [(N1, "heartbeat"), (N2, "heartbeat")]);
    assert!(r.take_heartbeats().is_empty(), "taken once");
    let round = match early[0].body {
        MessageBody::Heartbeat { round, .. } => round,
        ref b => panic!("{b:?}"),
    };
    r.step(
        msg(N1, N0, 2, MessageBody::HeartbeatResponse { round }),
        at(1060),
    );
    let left = r.lease_remaining(at(1060)).expect("lease renewed");
    let hold = Config::new(N0).lease_hold();
    assert_eq!(
        left,
        hold - Duration::from_millis(10),
        "timed from the round"
    );
    // Everything else the round produced leaves after the sync, in order.
    r.advance(syncing.durable);
    let next = settled(&mut r);
    assert!(next.messages.iter().all(|m| m.body.kind() == "append"));
    assert!(!next.messages.is_empty());
}

/// Only what the follower acknowledged holding is committed through a
/// heartbeat: its commit index is capped at the follower's match.
#[test]
fn a_heartbeat_carries_the_commit_capped_at_the_followers_match() {
    let mut r = settled_leader();
    r.step(ack(N1, 2, 2, 1), at(1010));
    assert_eq!(r.commit_index(), LogIndex(2));
    r.tick(at(1050));
    let commits: Vec<(NodeId, LogIndex)> = r
        .take_heartbeats()
        .iter()
        .map(|m| match m.body {
            MessageBody::Heartbeat { commit, .. } => (m.to, commit),
            ref b => panic!("{b:?}"),
        })
        .collect();
    assert_eq!(commits, [(N1, LogIndex(2)), (N2, LogIndex(0))]);
}

/// A follower answers a heartbeat while its own sync of an append runs,
/// and commits what the heartbeat says.
#[test]
fn a_follower_answers_a_heartbeat_during_its_sync() {
    let mut f = node(N1, 2, log(&[2]), 1);
    settled(&mut f);
    let append = MessageBody::Append {
        prev: LogId::new(2, 2),
        entries: vec![Entry {
            id: LogId::new(2, 3),
            payload: Payload::Noop,
        }],
        commit: LogIndex(2),
        round: 4,
    };
    f.step(msg(N0, N1, 2, append), at(10));
    let syncing = f.ready();
    assert!(syncing.must_sync);
    assert_eq!(beats(&syncing.messages), [(N0, "append_response")]);
    f.step(msg(N0, N1, 2, beat(3, 5)), at(20));
    let early = f.take_heartbeats();
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].body, MessageBody::HeartbeatResponse { round: 5 });
    assert_eq!(f.commit_index(), LogIndex(3));
}

/// A heartbeat of a newer term changes our term: that must be durable
/// before we answer anything in it, so the answer waits for the `Ready`
/// that writes the term, and early answers wait until it is advanced.
#[test]
fn no_early_answer_until_a_new_term_is_durable() {
    let mut f = node(N1, 2, log(&[2]), 1);
    settled(&mut f);
    f.step(msg(N0, N1, 3, beat(1, 1)), at(10));
    assert_eq!(f.term(), Term(3));
    assert!(f.take_heartbeats().is_empty(), "term 3 not written yet");
    let writing = f.ready();
    assert!(writing.must_sync, "the new term is synced");
    assert_eq!(beats(&writing.messages), [(N0, "heartbeat_response")]);
    f.step(msg(N0, N1, 3, beat(1, 2)), at(20));
    assert!(
        f.take_heartbeats().is_empty(),
        "term 3 is still being synced"
    );
    // The sync is done: the queued answer may leave ahead of the next
    // `Ready`, and so may later ones.
    f.advance(writing.durable);
    assert_eq!(beats(&f.take_heartbeats()), [(N0, "heartbeat_response")]);
    f.step(msg(N0, N1, 3, beat(1, 3)), at(30));
    assert_eq!(beats(&f.take_heartbeats()), [(N0, "heartbeat_response")]);
    assert!(settled(&mut f).messages.is_empty(), "each answer left once");
}

/// A `Ready` is handed out only once the previous one was advanced.
#[test]
#[should_panic(expected = "before the previous Ready was advanced")]
fn a_second_ready_before_the_first_is_advanced_is_refused() {
    let mut f = node(N1, 2, log(&[2]), 1);
    let _first = f.ready();
    f.ready();
}

/// The broken variant holds heartbeats back like every other message.
#[test]
fn the_broken_variant_keeps_heartbeats_for_the_next_ready() {
    let mut cfg = Config::new(N1);
    cfg.broken = crate::raft::Broken::HeartbeatsWaitForSync;
    let persisted = Persisted {
        hard_state: HardState {
            term: Term(2),
            voted_for: None,
            commit: LogIndex(1),
        },
        snapshot: None,
        entries: log(&[2]),
    };
    let mut f = Raft::new(cfg, persisted, at(0));
    settled(&mut f);
    f.step(msg(N0, N1, 2, beat(1, 1)), at(10));
    assert!(f.take_heartbeats().is_empty());
    assert_eq!(
        beats(&settled(&mut f).messages),
        [(N0, "heartbeat_response")]
    );
}
