//! The `snapshot` target: the state machine's snapshot decoder and the
//! storage's snapshot file reader.

use super::{Scratch, repair};
use crate::kv::{Limits, StateMachine};
use crate::raft::LogId;
use crate::storage::{Storage, write_snapshot_file};

/// The name the input's snapshot file gets: its metadata must match it.
const FILE: &str = "00000000000000000002-00000000000000000009.snap";

/// Decoding a snapshot never panics, and what decodes is a valid state
/// that round-trips.
///
/// Input: a selector byte, then the bytes. Selector bit 0 clear: the bytes
/// are a state machine snapshot for `StateMachine::restore`; set: they are
/// a snapshot file in a data directory, read as the node reads it at start,
/// and its data then goes through the same check. Bit 1: recompute the
/// checksums first (the file's and the state machine's), so that mutations
/// reach the decoders behind them. Bit 2: restore under the small session
/// bounds the simulator uses instead of the product's. What must hold: a
/// restored state machine satisfies `check_invariants` (a restore must
/// refuse a snapshot that breaks them), snapshots to bytes that restore to
/// an equal state with the same `state_hash` and encode to the same bytes
/// again; a snapshot file that reads back is written and read again
/// unchanged.
pub fn snapshot(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let limits = if selector & 4 == 0 {
        Limits::default()
    } else {
        super::small_limits()
    };
    let repair = selector & 2 != 0;
    if selector & 1 == 0 {
        if repair {
            repair::kv_snapshot(&mut bytes);
        }
        restore(limits, &bytes);
    } else {
        if repair {
            repair::snapshot_file(&mut bytes);
        }
        snapshot_file(limits, &bytes);
    }
}

fn restore(limits: Limits, data: &[u8]) {
    let Ok(sm) = StateMachine::restore(limits, data) else {
        return;
    };
    if let Err(e) = sm.check_invariants() {
        panic!("a restored snapshot breaks the invariants: {e}");
    }
    let bytes = sm.snapshot();
    let again = StateMachine::restore(limits, &bytes)
        .unwrap_or_else(|e| panic!("a snapshot of a restored state does not restore: {e:?}"));
    assert_eq!(again, sm, "a snapshot does not restore to the same state");
    assert_eq!(
        again.state_hash(),
        sm.state_hash(),
        "the same state hashes differently after a round trip"
    );
    assert_eq!(
        again.snapshot(),
        bytes,
        "the same state encodes differently"
    );
}

fn snapshot_file(limits: Limits, data: &[u8]) {
    let scratch = Scratch::new("snapshot");
    let dir = scratch.path();
    for sub in ["wal", "snap"] {
        std::fs::create_dir(dir.join(sub)).expect("scratch directory");
    }
    // Recovery refuses a snapshot without a WAL segment beside it.
    std::fs::write(dir.join("wal").join(format!("{:020}.log", 1)), b"").expect("scratch file");
    let path = dir.join("snap").join(FILE);
    std::fs::write(&path, data).expect("scratch file");
    let Ok(recovered) = Storage::inspect(dir) else {
        return;
    };
    let snap = recovered
        .persisted
        .snapshot
        .expect("the snapshot file was read");
    assert_eq!(snap.meta.last, LogId::new(2, 9), "not the file's snapshot");
    std::fs::remove_file(&path).expect("scratch file");
    write_snapshot_file(&dir.join("snap"), &snap)
        .unwrap_or_else(|e| panic!("a snapshot read back cannot be written: {e}"));
    let again = Storage::inspect(dir)
        .unwrap_or_else(|e| panic!("a snapshot written does not read back: {e}"));
    assert_eq!(again.persisted.snapshot.as_ref(), Some(&snap));
    restore(limits, &snap.data);
}

/// A state machine snapshot with keys, deadlines, sessions and member
/// addresses, alone and in a snapshot file.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    use crate::pb::{self, command::Op};
    use crate::raft::{Membership, NodeId, Snapshot, SnapshotMeta};
    use bytes::Bytes;
    use prost::Message;
    let mut sm = StateMachine::new(Limits::default());
    let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
    let ops = [
        Op::Register(pb::RegisterSession {}),
        Op::Set(pb::SetCmd {
            key: key("a"),
            value: key("1"),
        }),
        Op::Incr(pb::IncrCmd { key: key("n") }),
        Op::Expire(pb::ExpireCmd {
            key: key("a"),
            seconds: 5,
        }),
        Op::Cas(pb::CasCmd {
            key: key("b"),
            expected: None,
            value: key("v"),
        }),
        Op::MemberAddrs(pb::MemberAddrsCmd {
            id: 3,
            peer_addr: "h:7380".into(),
            client_addr: "h:7379".into(),
        }),
    ];
    for (op, index) in ops.into_iter().zip(1..) {
        let session = (index > 1).then_some(pb::Session {
            client_id: 1,
            seq: index,
            first_incomplete: 2,
        });
        let proposal = pb::Proposal {
            session,
            stamp_ms: 1000 * index,
            command: Some(pb::Command { op: Some(op) }),
            user: String::new(),
        };
        sm.apply(index, &proposal.encode_to_vec());
    }
    let data = sm.snapshot();
    let scratch = Scratch::new("snapshot-seed");
    let snap = Snapshot {
        meta: SnapshotMeta {
            last: LogId::new(2, 9),
            membership: Membership::new([NodeId(0), NodeId(1), NodeId(2)]),
        },
        data: data.clone(),
    };
    let path = write_snapshot_file(scratch.path(), &snap).expect("scratch directory");
    let file = std::fs::read(path).expect("just written");
    // Every selector: both layouts, with and without repair, both limits.
    (0..8u8)
        .map(|selector| {
            let bytes = if selector & 1 == 0 {
                &data[..]
            } else {
                &file[..]
            };
            [&[selector], bytes].concat()
        })
        .collect()
}
