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
    raft.advance(ready.durable);
    assert!(ready.messages.is_empty(), "{:?}", ready.messages);

    // The leader probes at its own last index: the empty log asks for index 1.
    raft.step(append(LogId::new(3, 2), vec![], 2), at(10_000));
    let ready = raft.ready();
    raft.advance(ready.durable);
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
            payload: Payload::config(members),
        },
        Entry {
            id: LogId::new(3, 2),
            payload: Payload::Noop,
        },
    ];
    raft.step(append(LogId::default(), entries, 2), at(10_050));
    let ready = raft.ready();
    raft.advance(ready.durable);
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
        raft.advance(ready.durable);
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

/// A node of StatefulSet `raftkv` with `replicas` founders and auto-join.
fn sts_config(id: u64, replicas: u64) -> Config {
    let args = Args {
        id: Some(id),
        data_dir: Some("/data/raftkv".into()),
        statefulset: Some("raftkv".into()),
        service: Some("raftkv-headless".into()),
        replicas: Some(replicas),
        auto_join: Some(true),
        ..Args::default()
    };
    Config::from_args(args, &|_| None).unwrap()
}

#[test]
fn a_scaled_up_ordinal_is_no_founder_and_changes_neither_founders_nor_cluster_id() {
    let founder = sts_config(0, 3);
    let added = sts_config(3, 3);
    assert!(founder.founder && !added.founder);
    assert_eq!(
        added.me().peer_addr,
        "raftkv-3.raftkv-headless.default.svc.cluster.local:7380"
    );
    assert_eq!(founders(&added), founders(&founder));
    assert_eq!(founders(&added).voters.len(), 3);
    assert_eq!(cluster_id(&added), cluster_id(&founder));
}

#[tokio::test]
async fn a_scaled_up_ordinal_without_auto_join_refuses_to_bootstrap() {
    let mut config = sts_config(3, 3);
    config.auto_join = false;
    let dir = tempfile::tempdir().unwrap();
    config.data_dir = dir.path().to_path_buf();
    let (mut storage, recovered) = Storage::open(dir.path()).unwrap();
    let gate = Gate::new(3);
    let err = match prepare(&config, &mut storage, recovered, &gate).await {
        Err(e) => e,
        Ok(_) => panic!("a non-founder must not start without joining"),
    };
    assert!(
        err.contains("not an initial member") && err.contains("--auto-join"),
        "{err}"
    );
    drop(storage); // releases the data directory's lock
    assert!(storage_is_empty(dir.path()), "nothing written: {err}");
}

fn storage_is_empty(dir: &std::path::Path) -> bool {
    let (_, recovered) = Storage::open(dir).unwrap();
    recovered.identity.is_none() && recovered.persisted.entries.is_empty()
}

mod auto_join_rules {
    use super::super::auto_join::{NotYet, others_needed, ready_for_change};
    use crate::pb;

    fn members(voters: &[u64], learners: &[u64], leader: u64) -> pb::MembersResponse {
        let info = |id: u64, voter| pb::MemberInfo {
            id,
            voter,
            ..pb::MemberInfo::default()
        };
        pb::MembersResponse {
            members: voters
                .iter()
                .map(|&v| info(v, true))
                .chain(learners.iter().map(|&l| info(l, false)))
                .collect(),
            leader: Some(leader),
        }
    }

    fn status(id: u64, leader: u64, term: u64, lease: f64) -> pb::StatusResponse {
        pb::StatusResponse {
            id,
            role: if id == leader { "leader" } else { "follower" }.into(),
            term,
            leader: Some(leader),
            lease_remaining_seconds: lease,
            ..pb::StatusResponse::default()
        }
    }

    #[test]
    fn a_quorum_must_remain_without_the_lost_node_before_and_after_its_removal() {
        assert_eq!(others_needed(3, true), 2);
        assert_eq!(others_needed(5, true), 3);
        assert_eq!(others_needed(4, true), 3);
        assert_eq!(others_needed(3, false), 2);
        // The only member lost its volume: nobody else can vouch for the
        // data, so this never proceeds (it needs one other voter).
        assert_eq!(others_needed(1, true), 1);
    }

    #[test]
    fn replacing_needs_a_leader_with_its_lease_and_a_quorum_naming_it() {
        let m = members(&[0, 1, 2], &[], 0);
        let leader = status(0, 0, 5, 0.2);
        let follower = status(2, 0, 5, 0.0);
        assert_eq!(
            ready_for_change(1, &m, Some(&leader), &[leader.clone(), follower.clone()]),
            Ok(())
        );
        // Only the leader answers: without node 2 no quorum would remain.
        assert_eq!(
            ready_for_change(1, &m, Some(&leader), std::slice::from_ref(&leader)),
            Err(NotYet::NoQuorum {
                answered: 1,
                needed: 2
            })
        );
        // A follower still in an older term, or naming another leader, does
        // not count.
        let stale = status(2, 0, 4, 0.0);
        assert!(ready_for_change(1, &m, Some(&leader), &[leader.clone(), stale]).is_err());
        // The lost node's own (impossible) answer is never counted.
        let me = status(1, 0, 5, 0.0);
        assert!(ready_for_change(1, &m, Some(&leader), &[leader.clone(), me]).is_err());
        let no_lease = status(0, 0, 5, 0.0);
        assert_eq!(
            ready_for_change(
                1,
                &m,
                Some(&no_lease),
                &[no_lease.clone(), follower.clone()]
            ),
            Err(NotYet::LeaderWithoutLease(0))
        );
        assert_eq!(
            ready_for_change(1, &m, Some(&follower), std::slice::from_ref(&follower)),
            Err(NotYet::NoLeader)
        );
    }

    #[test]
    fn a_majority_that_lost_its_volumes_never_recovers_by_itself() {
        // Nodes 1 and 2 of 3 came back empty; node 0 alone cannot be
        // elected, so no status names a leader holding a lease.
        let m = members(&[0, 1, 2], &[], 0);
        let lonely = pb::StatusResponse {
            id: 0,
            role: "candidate".into(),
            term: 9,
            ..pb::StatusResponse::default()
        };
        assert_eq!(
            ready_for_change(1, &m, None, &[lonely]),
            Err(NotYet::NoLeader)
        );
    }
}
