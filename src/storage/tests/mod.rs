//! Tests of the data directory: helpers here, cases by theme in submodules.

mod damage;
mod disk_bytes;
mod install;
mod log;
mod range;
mod snapshots;

use super::*;
use crate::raft::{LogId, Membership, NodeId, Payload, SnapshotMeta, Term};
use bytes::Bytes;
use std::fs;

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: Payload::Command(Bytes::from(format!("cmd-{index}"))),
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn hard_state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        voted_for: vote.map(NodeId),
        commit: crate::raft::LogIndex(commit),
    }
}

fn snap(term: u64, index: u64) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last: LogId::new(term, index),
            membership: Membership::new([NodeId(0), NodeId(1), NodeId(2)]),
        },
        data: Bytes::from(format!("state at {index}")),
    }
}

fn small_segments() -> Options {
    Options { segment_bytes: 256 }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Byte offsets of the records in one segment file.
fn record_offsets(path: &Path) -> Vec<u64> {
    let data = fs::read(path).unwrap();
    let mut offs = Vec::new();
    let mut off = 0;
    while off + 8 <= data.len() {
        offs.push(off as u64);
        let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        off += 8 + len;
    }
    offs
}

/// Every file under `dir` with its bytes, to prove something changed nothing.
fn snapshot_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}
