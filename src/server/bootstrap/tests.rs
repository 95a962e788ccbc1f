use super::*;
use crate::raft::{
    Entry, Instant, LogId, LogIndex, Message, MessageBody, Payload, Raft, Role, Term,
};
use crate::server::config::Args;

fn config(id: u64) -> Config {
    let args = Args {
        id: Some(id),
        data_dir: Some("/data/raftkv".into()),
        peers: Some("0=a:7380,1=b:7380,2=c:7380".into()),
        ..Args::default()
    };
    Config::from_args(args, &|_| None).unwrap()
}

#[test]
fn the_refusal_names_the_cluster_the_peer_and_the_recovery() {
    let err = refusal(&config(2), 0, "raftkv-x");
    assert!(!err.contains('\n'), "one line: {err}");
    for part in [
        "peer 0 (a:7380)",
        "cluster \"raftkv-x\"",
        "raftctl member remove 2",
        "raftctl member add 2 --peer-addr c:7380 --client-addr c:7379 --learner",
        "--join",
        "docs/operations.md",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

fn at(ms: u64) -> Instant {
    Instant(Duration::from_millis(ms))
}

fn append(prev: LogId, entries: Vec<Entry>, commit: u64) -> Message {
    Message {
        from: NodeId(0),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::Append {
            prev,
            entries,
            commit: LogIndex(commit),
            round: 1,
        },
    }
}

/// The core copes with a joining node's empty state: with no membership it
/// is a learner that never campaigns, and it takes the leader's log.
#[test]
fn a_joining_node_never_campaigns_and_takes_the_leaders_log() {
    let mut raft = Raft::new(raft::Config::new(NodeId(2)), Persisted::default(), at(0));
    assert_eq!(raft.role(), Role::Learner);
    for ms in (50..10_000).step_by(50) {
        raft.tick(at(ms));
    }
    let ready = raft.ready();
    assert!(ready.messages.is_empty(), "{:?}", ready.messages);

    // The leader probes at its own last index: the empty log asks for index 1.
    raft.step(append(LogId::new(3, 2), vec![], 2), at(10_000));
    let ready = raft.ready();
    match &ready.messages[..] {
        [m] => match &m.body {
            MessageBody::AppendResponse {
                success, conflict, ..
            } => {
                assert!(!success);
                assert_eq!(conflict.index, LogIndex(1));
            }
            other => panic!("unexpected answer {other:?}"),
        },
        other => panic!("unexpected messages {other:?}"),
    }

    let mut members = founders(&config(2));
    members.voters.remove(&NodeId(2));
    members.learners.insert(NodeId(2));
    let entries = vec![
        Entry {
            id: LogId::new(1, 1),
            payload: Payload::Config(members),
        },
        Entry {
            id: LogId::new(3, 2),
            payload: Payload::Noop,
        },
    ];
    raft.step(append(LogId::default(), entries, 2), at(10_050));
    let ready = raft.ready();
    assert_eq!(ready.entries.len(), 2);
    assert_eq!(ready.committed.len(), 2);
    assert_eq!(raft.role(), Role::Learner);
    assert_eq!(raft.leader(), Some(NodeId(0)));
}

/// An empty node (a wiped voter's successor, before it holds the log) never
/// grants a vote or a pre-vote, whatever the candidate's log.
#[test]
fn a_node_with_an_empty_log_grants_no_vote() {
    let mut raft = Raft::new(raft::Config::new(NodeId(2)), Persisted::default(), at(0));
    for (ms, pre_vote) in [(10_000, true), (10_050, false)] {
        raft.step(
            Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(7),
                body: MessageBody::Vote {
                    last_log: LogId::new(6, 100),
                    pre_vote,
                    transfer: true,
                },
            },
            at(ms),
        );
        let ready = raft.ready();
        match &ready.messages[..] {
            [m] => match &m.body {
                MessageBody::VoteResponse { granted, .. } => {
                    assert!(!granted, "granted (pre-vote: {pre_vote})")
                }
                other => panic!("unexpected answer {other:?}"),
            },
            other => panic!("unexpected messages {other:?}"),
        }
    }
}

#[test]
fn founders_derive_one_cluster_id_but_a_lone_founder_draws_its_own() {
    assert_eq!(cluster_id(&config(2)), cluster_id(&config(0)));
    let lone = |id| {
        let args = Args {
            id: Some(id),
            data_dir: Some("/data/raftkv".into()),
            peers: Some(format!("{id}=a:7380")),
            ..Args::default()
        };
        Config::from_args(args, &|_| None).unwrap()
    };
    assert_ne!(cluster_id(&lone(0)), cluster_id(&lone(0)));
}
