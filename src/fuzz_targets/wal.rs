//! The `wal` target: a data directory made of the fuzzer's files.

use super::{Scratch, number, repair};
use crate::raft::{Config, Entry, Instant, LogId, NodeId, Payload, Raft};
use crate::storage::{MAX_STORED, Options, Recovered, Storage};
use arbitrary::Unstructured;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Opening a data directory never panics: it recovers or it refuses.
///
/// Input: one options byte (bits 0-2: segment size; bit 3: repair the
/// checksums), then files, each
/// `[kind][name: one or two numbers][length: u16 LE][bytes]`: WAL segments,
/// snapshots, the identity file, leftover temp files, stray files. With
/// the repair bit, every record's, snapshot file's and identity file's
/// checksum is recomputed before the directory is opened, so that the
/// decoders behind the checksums see the mutated bytes; without it a
/// mutation is mostly refused at a checksum, which must be clean too. What
/// must hold:
/// - `inspect` and `open` agree: both refuse, or both recover the same state;
/// - a refused open leaves every file as it was;
/// - the recovered log is contiguous after the snapshot, and the core
///   starts from it (as the node does) without panicking;
/// - the repaired directory opens again to the same state with nothing
///   left to repair, and takes the next entry, which a reopen then holds.
pub fn wal(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let options_byte = u.arbitrary::<u8>().unwrap_or(0);
    let options = Options {
        segment_bytes: 32 << (options_byte & 7),
    };
    let repair = options_byte & REPAIR != 0;
    let scratch = Scratch::new("wal");
    let dir = scratch.path();
    for sub in ["wal", "snap"] {
        std::fs::create_dir(dir.join(sub)).expect("scratch directory");
    }
    while !u.is_empty() {
        let (name, mut bytes) = file(&mut u);
        if repair {
            repair_file(&name, &mut bytes);
        }
        std::fs::write(dir.join(name), bytes).expect("scratch file");
    }
    let before = files(dir);
    let inspected = Storage::inspect(dir);
    let opened = Storage::open_with(dir, options.clone());
    let (storage, recovered) = match (inspected, opened) {
        (Err(_), Err(_)) => {
            assert_eq!(files(dir), before, "a refused open changed the directory");
            return;
        }
        (Ok(_), Err(e)) => panic!("inspect recovers a directory that open refuses: {e}"),
        (Err(e), Ok(_)) => panic!("open recovers a directory that inspect refuses: {e}"),
        (Ok(inspected), Ok(opened)) => {
            assert_eq!(inspected.persisted, opened.1.persisted);
            assert_eq!(inspected.identity, opened.1.identity);
            opened
        }
    };
    check(&recovered);
    drop(storage);

    let (mut storage, again) = Storage::open_with(dir, options.clone())
        .unwrap_or_else(|e| panic!("a directory just opened does not open again: {e}"));
    assert_eq!(again.persisted, recovered.persisted);
    assert_eq!(again.identity, recovered.identity);
    assert_eq!(again.warnings, Vec::<String>::new(), "repairs left to do");

    let p = &recovered.persisted;
    let last = p
        .entries
        .last()
        .map(|e| e.id)
        .or(p.snapshot.as_ref().map(|s| s.meta.last))
        .unwrap_or_default();
    // Storage takes no index above MAX_STORED.
    let Some(index) = last.index.0.checked_add(1).filter(|&i| i <= MAX_STORED) else {
        return;
    };
    let next = Entry {
        id: LogId::new(last.term.0.max(p.hard_state.term.0), index),
        payload: Payload::Command(Bytes::from_static(b"next")),
    };
    storage
        .append(std::slice::from_ref(&next))
        .and_then(|()| storage.sync())
        .unwrap_or_else(|e| panic!("the recovered log does not take entry {index}: {e}"));
    drop(storage);
    let (_, extended) = Storage::open_with(dir, options)
        .unwrap_or_else(|e| panic!("no reopen after appending entry {index}: {e}"));
    let mut want = p.entries.clone();
    want.push(next);
    assert_eq!(
        extended.persisted.entries, want,
        "the appended entry is lost"
    );
}

/// The options bit that asks for the checksums to be recomputed.
const REPAIR: u8 = 0x08;

/// Recomputes the checksums of a file named as `file` names it.
fn repair_file(name: &Path, bytes: &mut [u8]) {
    let name = name.to_string_lossy();
    if name.starts_with("wal/") {
        repair::wal_segment(bytes);
    } else if name.starts_with("snap/") {
        repair::snapshot_file(bytes);
    } else if name == "identity" {
        repair::identity(bytes);
    }
}

/// One file of the input: its path in the data directory and its bytes.
fn file(u: &mut Unstructured) -> (PathBuf, Vec<u8>) {
    let kind = u.arbitrary::<u8>().unwrap_or(0) % 6;
    let first = number(u);
    let snap = |index| format!("snap/{first:020}-{index:020}.snap");
    let name = match kind {
        0 => format!("wal/{first:020}.log"),
        1 => snap(number(u)),
        2 => "identity".to_string(),
        // Leftovers of an interrupted atomic write: ignored, then removed.
        3 => format!("{}.tmp", snap(number(u))),
        4 => format!("wal/{first}.txt"),
        // A malformed segment name: it may hold data, so it is refused.
        _ => format!("wal/{first}.log"),
    };
    let len = u.arbitrary::<u16>().unwrap_or(0) as usize;
    let bytes = u.bytes(len.min(u.len())).unwrap_or_default().to_vec();
    (PathBuf::from(name), bytes)
}

/// What a recovered directory must satisfy, and starting the core from it.
fn check(recovered: &Recovered) {
    let p = &recovered.persisted;
    let floor = p.snapshot.as_ref().map_or(0, |s| s.meta.last.index.0);
    for (i, e) in p.entries.iter().enumerate() {
        assert_eq!(
            Some(e.index().0),
            floor.checked_add(1 + i as u64),
            "the recovered log is not contiguous after the snapshot at {floor}"
        );
    }
    let id = recovered.identity.as_ref().map_or(0, |i| i.node_id);
    let mut raft = Raft::new(Config::new(NodeId(id)), p.clone(), Instant::default());
    raft.tick(Instant(Duration::from_secs(1)));
    let ready = raft.ready();
    raft.advance(ready.durable);
}

/// Every file under `dir` but the lock file, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("scratch directory") {
            let path = entry.expect("scratch directory").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name() != Some(crate::storage::LOCK_FILE.as_ref()) {
                let bytes = std::fs::read(&path).expect("scratch file");
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// Inputs that describe data directories written by `Storage` itself: the
/// fuzzer starts from valid records and checksums.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    use crate::raft::{HardState, Membership, Snapshot, SnapshotMeta, Term};
    use crate::storage::Identity;
    let entry = |index: u64| Entry {
        id: LogId::new(1 + index / 4, index),
        payload: match index {
            1 => Payload::config(Membership::new([NodeId(0), NodeId(1), NodeId(2)])),
            _ => Payload::Command(Bytes::from(format!("set k{index}"))),
        },
    };
    let snapshot = |index: u64| Snapshot {
        meta: SnapshotMeta {
            last: entry(index).id,
            membership: Membership::new([NodeId(0), NodeId(1), NodeId(2)]),
        },
        data: Bytes::from_static(b"state"),
    };
    let hard_state = HardState {
        term: Term(3),
        voted_for: Some(NodeId(1)),
        commit: crate::raft::LogIndex(4),
    };
    let mut seeds = Vec::new();
    // 0: a log; 1: small segments and a snapshot; 2: an installed snapshot
    // (restart marker); 3: as 1 with a torn tail.
    for case in 0..4u8 {
        let scratch = Scratch::new("wal-seed");
        let dir = scratch.path();
        let options_byte = if case == 0 { 7 } else { 1 };
        let options = Options {
            segment_bytes: 32 << options_byte,
        };
        let (mut storage, _) = Storage::open_with(dir, options).expect("fresh directory");
        let identity = Identity {
            cluster_id: "c".into(),
            node_id: 0,
            incarnation: 1,
        };
        storage.set_identity(&identity).expect("identity");
        let entries: Vec<Entry> = (1..=8).map(entry).collect();
        storage.append(&entries).expect("append");
        storage.set_hard_state(hard_state).expect("hard state");
        storage.sync().expect("sync");
        match case {
            1 | 3 => storage.save_snapshot(&snapshot(5)).expect("snapshot"),
            2 => storage.install_snapshot(&snapshot(10)).expect("install"),
            _ => {}
        }
        drop(storage);
        let mut input = vec![options_byte];
        for (path, mut bytes) in files(dir) {
            let name = path.strip_prefix(dir).expect("under dir");
            if case == 3 && name.starts_with("wal") {
                bytes.truncate(bytes.len().saturating_sub(3));
            }
            encode_file(name, &bytes, &mut input);
        }
        seeds.push(input);
    }
    // The same directories with the repair bit: mutations of them reach
    // the record decoders.
    let repaired: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| [&[s[0] | REPAIR][..], &s[1..]].concat())
        .collect();
    seeds.extend(repaired);
    seeds
}

/// Appends the input form of the file `name` (relative to the data
/// directory, as `file` writes it) holding `bytes`.
fn encode_file(name: &Path, bytes: &[u8], out: &mut Vec<u8>) {
    let name = name.to_str().expect("a name we wrote");
    let numbers = |s: &str| -> Vec<u64> {
        s.split(['-', '.'])
            .filter_map(|part| part.parse().ok())
            .collect()
    };
    let (kind, nums) = if let Some(rest) = name.strip_prefix("wal/") {
        (0, numbers(rest))
    } else if let Some(rest) = name.strip_prefix("snap/") {
        (1, numbers(rest))
    } else {
        (2, vec![0])
    };
    out.push(kind);
    for n in nums {
        super::put_number(n, out);
    }
    let len = u16::try_from(bytes.len()).expect("seed files are small");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}
