//! The replica on a one-node cluster, driven by hand: what it answers, when,
//! and at which cluster time. Multi-node orderings (answers in another
//! term, snapshots, leader changes) are exercised by the simulator, which
//! runs this same code.

use super::*;
use crate::pb::command::Op;
use crate::raft::{Config, Membership, bootstrap};
use std::time::Duration;

/// Callers are plain numbers here.
#[derive(Debug)]
struct Test;

impl Callers for Test {
    type Write = u32;
    type Change = u32;
    type Read = u32;
    type Transfer = u32;
}

fn at(ms: u64) -> Instant {
    Instant(Duration::from_millis(ms))
}

/// A one-node cluster whose monotonic clock starts at `origin_ms`.
struct One {
    replica: Replica<Test>,
    now: u64,
}

impl One {
    fn new(origin_ms: u64) -> One {
        let cfg = Config::new(NodeId(0));
        let persisted = bootstrap(Membership::new([NodeId(0)]));
        let raft = Raft::new(cfg, persisted, at(origin_ms));
        let sm = StateMachine::new(Limits::default());
        let replica = Replica::new(raft, sm, 0, Limits::default(), at(origin_ms));
        let mut one = One {
            replica,
            now: origin_ms,
        };
        one.run_until(|r| r.raft().role() == Role::Leader);
        one
    }

    /// Ticks every 10 ms, carrying out each `Ready` (nothing to persist or
    /// send with one node), until `done` holds.
    fn run_until(&mut self, done: impl Fn(&Replica<Test>) -> bool) {
        for _ in 0..1000 {
            self.turn();
            if done(&self.replica) {
                return;
            }
            self.now += 10;
            self.replica.tick(at(self.now));
        }
        panic!("did not happen within 10 s");
    }

    fn turn(&mut self) {
        let mut ready = self.replica.ready();
        self.replica.persisted(ready.durable);
        let applied = Applied::take(&mut ready);
        self.replica.advance(applied, at(self.now)).unwrap();
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            self.replica.tick(at(self.now));
            self.turn();
        }
    }

    fn write(&mut self, op: Op) -> (pb::WriteResponse, u64) {
        let req = pb::WriteRequest {
            session: None,
            command: Some(pb::Command { op: Some(op) }),
        };
        self.replica.propose_write(req, 7, at(self.now));
        self.turn();
        match self.replica.take_effects().pop() {
            Some(Effect::Written {
                caller: 7,
                result: Ok(r),
                cluster_ms,
            }) => (r, cluster_ms),
            other => panic!("write answered {other:?}"),
        }
    }

    fn ttl(&mut self, key: &str) -> (pb::TtlResponse, u64) {
        let key = Bytes::copy_from_slice(key.as_bytes());
        self.replica.read(ReadKind::Ttl(key), 9, at(self.now));
        self.turn();
        match self.replica.take_effects().pop() {
            Some(Effect::Read {
                caller: 9,
                result: Ok(ReadAnswer::Ttl(t)),
                cluster_ms,
            }) => (t, cluster_ms),
            other => panic!("read answered {other:?}"),
        }
    }
}

fn set(k: &str, v: &str) -> Op {
    Op::Set(pb::SetCmd {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    })
}

fn expire(k: &str, seconds: u64) -> Op {
    Op::Expire(pb::ExpireCmd {
        key: Bytes::copy_from_slice(k.as_bytes()),
        seconds,
    })
}

#[test]
fn a_write_is_answered_once_applied_with_the_state_machines_answer() {
    let mut one = One::new(0);
    let (r, _) = one.write(set("k", "v"));
    assert!(matches!(r.result, Some(pb::write_response::Result::Set(_))));
    assert_eq!(r.index, one.replica.applied());
}

#[test]
fn pending_writes_fail_as_outcome_unknown_and_reads_as_not_leader() {
    let mut one = One::new(0);
    let req = pb::WriteRequest {
        session: None,
        command: Some(pb::Command {
            op: Some(set("k", "v")),
        }),
    };
    one.replica.propose_write(req, 1, at(one.now));
    one.replica.fail_all("leadership lost");
    match one.replica.take_effects().as_slice() {
        [
            Effect::Written {
                caller: 1,
                result: Err(Refusal::OutcomeUnknown(_)),
                ..
            },
        ] => {}
        other => panic!("{other:?}"),
    }
}

/// Cluster time advances only by the monotonic time measured
/// since an entry was applied; an idle leader proposes time entries while
/// a key has a deadline; reads see the applied cluster time only.
#[test]
fn an_idle_leader_moves_cluster_time_with_time_entries() {
    let mut one = One::new(5_000_000);
    let (_, t0) = one.write(set("k", "v"));
    let (r, t1) = one.write(expire("k", 1));
    assert!(matches!(r.result, Some(pb::write_response::Result::Expire(ref e)) if e.applied));
    assert!(t1 >= t0);
    // A monotonic clock that reads 5_000 s does not make cluster time 5_000 s.
    assert!(
        t1 < 60_000,
        "cluster time {t1} came from the clock's origin"
    );
    let (ttl, _) = one.ttl("k");
    assert_eq!(ttl.seconds, Some(1));
    // Idle for 2 s: time entries every 250 ms move cluster time on, and
    // the key expires, neither early nor much later than a second.
    one.run_for(900);
    let (ttl, t) = one.ttl("k");
    assert!(ttl.found, "expired early at {t} (deadline {})", t1 + 1000);
    assert!(t >= t1 + 900 - 260, "cluster time lags: {t} after {t1}");
    one.run_for(1_100);
    let (ttl, t) = one.ttl("k");
    assert!(!ttl.found, "still there at {t} (deadline {})", t1 + 1000);
    // No deadline and no session left: no more time entries.
    let applied = one.replica.applied();
    one.run_for(1_000);
    assert_eq!(one.replica.applied(), applied);
}

/// A replica restored from a snapshot (a restart, or a new leader) stamps
/// from the snapshot's cluster time, whatever its own clock reads.
#[test]
fn a_restarted_replica_continues_cluster_time_from_the_state_machine() {
    let mut one = One::new(0);
    one.write(set("k", "v"));
    one.run_for(3_000);
    let (_, before) = one.write(set("k", "w"));
    let snap = one.replica.take_snapshot();
    // The new process's monotonic clock starts far away.
    let cfg = Config::new(NodeId(0));
    let persisted = raft::Persisted {
        hard_state: raft::HardState {
            term: one.replica.raft().term(),
            voted_for: Some(NodeId(0)),
            commit: snap.meta.last.index,
        },
        snapshot: Some(snap.clone()),
        entries: Vec::new(),
    };
    let origin = 9_000_000_000;
    let raft = Raft::new(cfg, persisted, at(origin));
    let sm = StateMachine::restore(Limits::default(), &snap.data).unwrap();
    let index = snap.meta.last.index.0;
    let replica = Replica::new(raft, sm, index, Limits::default(), at(origin));
    let mut two = One {
        replica,
        now: origin,
    };
    two.run_until(|r| r.raft().role() == Role::Leader);
    let (_, after) = two.write(set("k", "x"));
    assert!(
        after >= before,
        "cluster time went back: {after} < {before}"
    );
    assert!(
        after <= before + 5_000,
        "cluster time jumped with the clock: {after} (was {before})"
    );
}

/// A range read is handed out as a scan over the state it was released at:
/// the node runs it off its loop, and writes applied meanwhile do not show.
#[test]
fn a_range_read_scans_the_state_it_was_released_at() {
    let mut one = One::new(1_000);
    one.write(set("p/a", "1"));
    one.write(set("p/b", "2"));
    let request = pb::RangeRequest {
        prefix: Bytes::from_static(b"p/"),
        ..Default::default()
    };
    one.replica.read(ReadKind::Range(request), 5, at(one.now));
    one.turn();
    let scan = match one.replica.take_effects().pop() {
        Some(Effect::Scan {
            caller: 5, scan, ..
        }) => scan,
        other => panic!("range answered {other:?}"),
    };
    one.write(set("p/c", "3"));
    let ReadAnswer::Range(page) = scan.run() else {
        panic!("not a range answer");
    };
    let keys: Vec<&[u8]> = page.items.iter().map(|kv| &kv.key[..]).collect();
    assert_eq!(keys, [&b"p/a"[..], b"p/b"]);
    assert_eq!(page.count, 2);
}

/// A backup's read answers with a copy of the state at the applied index,
/// its term and the voters; writes applied afterwards do not show in it.
#[test]
fn a_state_read_copies_the_applied_state_with_its_index_and_term() {
    let mut one = One::new(1_000);
    let (answer, _) = one.write(set("k", "1"));
    one.replica.read(ReadKind::State, 6, at(one.now));
    one.turn();
    let copy = match one.replica.take_effects().pop() {
        Some(Effect::Read {
            caller: 6,
            result: Ok(ReadAnswer::State(copy)),
            ..
        }) => copy,
        other => panic!("state read answered {other:?}"),
    };
    assert_eq!(copy.index, one.replica.state_machine().applied_index());
    assert!(copy.index >= answer.index);
    assert_eq!(copy.term, one.replica.raft().term().0);
    assert_eq!(copy.voters, [0]);
    one.write(set("k", "2"));
    assert_eq!(&copy.sm.get(b"k").value[..], b"1");
    assert_eq!(&one.replica.state_machine().get(b"k").value[..], b"2");
}

/// A one-node cluster that asks for a snapshot every `threshold` entries.
fn snapshotting(threshold: u64, policy: SnapshotPolicy) -> One {
    snapshotting_seeded(threshold, policy, 0)
}

/// The same, with the core's seed (which draws the snapshot stagger).
fn snapshotting_seeded(threshold: u64, policy: SnapshotPolicy, seed: u64) -> One {
    let mut cfg = Config::new(NodeId(0));
    cfg.snapshot_threshold = threshold;
    cfg.seed = seed;
    let persisted = bootstrap(Membership::new([NodeId(0)]));
    let raft = Raft::new(cfg, persisted, at(0));
    let sm = StateMachine::new(Limits::default());
    let mut replica = Replica::new(raft, sm, 0, Limits::default(), at(0));
    replica.set_snapshot_policy(policy, 0);
    let mut one = One { replica, now: 0 };
    one.run_until(|r| r.raft().role() == Role::Leader);
    one
}

/// Writes small keys until a snapshot is due; how many it took.
fn small_writes_until_due(one: &mut One, limit: u64) -> u64 {
    for n in 1..=limit {
        one.write(set(&format!("s{n}"), "v"));
        if one.replica.snapshot_due() {
            return n;
        }
    }
    panic!("no snapshot due after {limit} writes");
}

/// A state of 100 values of 1 KiB, snapshotted: its size.
fn big_state_snapshotted(one: &mut One) -> u64 {
    let value = "x".repeat(1024);
    for n in 0..100 {
        one.write(set(&format!("big{n}"), &value));
    }
    assert!(one.replica.snapshot_due(), "no snapshot was ever taken");
    let snap = one.replica.take_snapshot();
    assert!(!one.replica.snapshot_due());
    snap.data.len() as u64
}

/// A large state is not rewritten every
/// `snapshot_threshold` small writes; the next snapshot waits until the log
/// since the last one is half that snapshot's size (the default ratio),
/// times this node's stagger.
#[test]
fn a_snapshot_waits_until_the_log_since_the_last_is_half_its_size() {
    let mut one = snapshotting(10, SnapshotPolicy::default());
    let size = big_state_snapshotted(&mut one);
    assert!(size > 100 * 1024, "{size}");
    let stagger = one.replica.stagger();
    let n = small_writes_until_due(&mut one, 100_000);
    // Each small write is a few dozen bytes of log: thousands of them,
    // where the entry threshold alone would have asked after 10.
    assert!(
        n > 500,
        "a snapshot of {size} bytes was due after {n} writes"
    );
    let wanted = size as f64 / 2.0 * stagger;
    let log = one.replica.log_bytes as f64;
    assert!(log >= wanted && log < wanted + 200.0, "{log} for {wanted}");
}

/// Ratio 0 is the entry count alone: a snapshot every `threshold` entries
/// (times the stagger).
#[test]
fn ratio_zero_snapshots_on_the_entry_count_alone() {
    let mut one = snapshotting(10, SnapshotPolicy { log_ratio: 0.0 });
    big_state_snapshotted(&mut one);
    let wanted = (10.0 * one.replica.stagger()).ceil() as u64;
    assert_eq!(small_writes_until_due(&mut one, 100), wanted);
}

/// Nodes applying the same entries do not all snapshot at the same index:
/// each puts it off by its own stagger, in [1, 1.5), redrawn per snapshot.
#[test]
fn nodes_stagger_their_snapshots() {
    let due_after = |seed| {
        let mut one = snapshotting_seeded(10, SnapshotPolicy::default(), seed);
        big_state_snapshotted(&mut one);
        small_writes_until_due(&mut one, 100_000)
    };
    let (a, b, c) = (due_after(1), due_after(2), due_after(3));
    assert!(a != b && b != c && a != c, "due after {a}, {b}, {c} writes");
    let mut drawn = Vec::new();
    for seed in 0..3 {
        for index in [0, 10_000, 431_231, u64::MAX] {
            let s = stagger(seed, index);
            assert!((1.0..1.0 + MAX_STAGGER).contains(&s), "{s}");
            drawn.push(s);
        }
    }
    drawn.sort_by(f64::total_cmp);
    drawn.dedup();
    assert_eq!(drawn.len(), 12, "{drawn:?}");
}

/// After a restart the log is weighed against the snapshot restored, and
/// what is applied while a snapshot is encoded counts toward the next one.
#[test]
fn the_policy_weighs_a_restored_snapshot_and_writes_during_an_encoding() {
    let mut one = snapshotting(10, SnapshotPolicy::default());
    one.replica
        .set_snapshot_policy(SnapshotPolicy::default(), 4_000);
    let n = small_writes_until_due(&mut one, 10_000);
    assert!(n > 10, "due after {n} writes despite a 4,000-byte snapshot");
    let (index, sm) = one.replica.begin_snapshot();
    let meanwhile = one.write(set("during", "the encoding")).0.index;
    let snap = one
        .replica
        .finish_snapshot(index, sm.snapshot(), at(one.now))
        .expect("no install came between");
    assert!(meanwhile > snap.meta.last.index.0);
    assert_eq!(one.replica.snapshot_bytes, snap.data.len() as u64);
    let counted = one.replica.log_bytes;
    assert!(counted > ENTRY_OVERHEAD_BYTES, "{counted}");
    assert!(counted < 200, "{counted}: more than the one write after it");
}

#[test]
fn a_stopping_node_refuses_new_requests_and_a_lone_leader_stops_after_its_grace() {
    let mut one = One::new(0);
    let grace = Duration::from_millis(500);
    assert_eq!(
        one.replica.stop(grace, at(one.now)),
        StopHandoff::NoSuccessor
    );
    assert_eq!(
        one.replica.stop(grace, at(one.now)),
        StopHandoff::AlreadyStopping
    );
    assert!(one.replica.is_stopping());
    let req = pb::WriteRequest {
        session: None,
        command: Some(pb::Command {
            op: Some(set("k", "v")),
        }),
    };
    one.replica.propose_write(req, 1, at(one.now));
    one.replica
        .read(ReadKind::Get(Bytes::from_static(b"k")), 2, at(one.now));
    one.replica
        .propose_change(ConfChange::AddLearner(NodeId(1)), None, 3, at(one.now));
    one.replica.transfer_leadership(None, 4, at(one.now));
    let refused: Vec<bool> = one
        .replica
        .take_effects()
        .iter()
        .map(|e| {
            matches!(
                e,
                Effect::Written {
                    caller: 1,
                    result: Err(Refusal::Stopping),
                    ..
                } | Effect::Read {
                    caller: 2,
                    result: Err(Refusal::Stopping),
                    ..
                } | Effect::Changed {
                    caller: 3,
                    result: Err(Refusal::Stopping)
                } | Effect::Transferred {
                    caller: 4,
                    result: Err(Refusal::Stopping)
                }
            )
        })
        .collect();
    assert_eq!(refused, vec![true; 4]);
    // Nothing was proposed: the log did not move.
    let applied = one.replica.applied();
    one.run_for(100);
    assert_eq!(one.replica.applied(), applied);
    // It still leads, so it waits out its grace period for a successor.
    assert!(!one.replica.stop_due(at(one.now)));
    let until = one.now + 500;
    assert!(one.replica.stop_due(at(until)));
}

#[test]
fn a_transfer_with_no_voter_to_take_over_is_refused_as_busy() {
    let mut one = One::new(0);
    one.replica.transfer_leadership(None, 5, at(one.now));
    assert!(matches!(
        one.replica.take_effects().as_slice(),
        [Effect::Transferred { caller: 5, result: Err(Refusal::Busy(why)) }]
            if why.contains("no voter")
    ));
}

/// Asks for `change` through request `seq` of `client`'s session; the
/// effects that answer it once the log has moved.
fn change_through(one: &mut One, change: ConfChange, client: u64, seq: u64) -> Vec<Effect<Test>> {
    let context = pb::ChangeContext {
        session: Some(pb::Session {
            client_id: client,
            seq,
            first_incomplete: seq,
        }),
        user: String::new(),
    };
    let now = at(one.now);
    one.replica.propose_change(change, Some(context), 6, now);
    one.turn();
    one.replica.take_effects()
}

#[test]
fn a_retried_change_is_answered_from_its_session_not_evaluated_again() {
    let mut one = One::new(0);
    let (r, _) = one.write(Op::Register(pb::RegisterSession {}));
    let Some(pb::write_response::Result::Register(session)) = r.result else {
        panic!("register answered {r:?}");
    };
    let client = session.client_id;
    let add = ConfChange::AddLearner(NodeId(1));
    let first = change_through(&mut one, add, client, 1);
    let [
        Effect::Changed {
            caller: 6,
            result: Ok(index),
        },
    ] = first.as_slice()
    else {
        panic!("the change answered {first:?}");
    };
    let index = *index;
    assert!(one.replica.raft().membership().contains(NodeId(1)));
    // The retry: evaluated again, node 1 is already a member; from the
    // session, it is the first answer, and nothing is proposed.
    let applied = one.replica.applied();
    let retry = change_through(&mut one, add, client, 1);
    assert!(
        matches!(retry.as_slice(), [Effect::Changed { caller: 6, result: Ok(i) }] if *i == index),
        "{retry:?}"
    );
    assert_eq!(one.replica.applied(), applied);
    // A new request of the session is evaluated, and refused.
    let again = change_through(&mut one, add, client, 2);
    assert!(
        matches!(again.as_slice(), [Effect::Changed { caller: 6, result: Err(Refusal::Invalid(why)) }]
            if why.contains("already a member")),
        "{again:?}"
    );
}

#[test]
fn a_change_through_a_session_waits_for_the_last_change_to_apply() {
    let mut one = One::new(0);
    let (r, _) = one.write(Op::Register(pb::RegisterSession {}));
    let Some(pb::write_response::Result::Register(session)) = r.result else {
        panic!("register answered {r:?}");
    };
    let context = |seq| pb::ChangeContext {
        session: Some(pb::Session {
            client_id: session.client_id,
            seq,
            first_incomplete: 1,
        }),
        user: String::new(),
    };
    let now = at(one.now);
    let add = ConfChange::AddLearner(NodeId(1));
    one.replica.propose_change(add, Some(context(1)), 1, now);
    // Not applied yet: whether request 1 took effect is not known here.
    one.replica.propose_change(add, Some(context(1)), 2, now);
    assert!(matches!(one.replica.take_effects().as_slice(),
            [Effect::Changed { caller: 2, result: Err(Refusal::Busy(why)) }]
                if why.contains("not applied yet")),);
    // An unknown session is refused before anything is proposed.
    one.turn();
    let stranger = pb::ChangeContext {
        session: Some(pb::Session {
            client_id: 999,
            seq: 1,
            first_incomplete: 1,
        }),
        user: String::new(),
    };
    let remove = ConfChange::Remove(NodeId(1));
    one.replica
        .propose_change(remove, Some(stranger), 3, at(one.now));
    let effects = one.replica.take_effects();
    assert!(
        effects.iter().any(|e| matches!(e,
            Effect::Changed { caller: 3, result: Err(Refusal::Rejected(e)) }
                if e.code() == pb::kv_error::Code::SessionExpired)),
        "{effects:?}"
    );
    assert!(one.replica.raft().membership().contains(NodeId(1)));
}
