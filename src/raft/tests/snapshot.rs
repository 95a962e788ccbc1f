//! Installing the leader's snapshot, or keeping a log that already holds its
//! last entry (docs/consensus.md, "Snapshots").

use super::*;

fn responses(msgs: &[Message]) -> Vec<(LogIndex, bool)> {
    msgs.iter()
        .filter_map(|m| match m.body {
            MessageBody::SnapshotResponse {
                last_index, done, ..
            } => Some((last_index, done)),
            _ => None,
        })
        .collect()
}

/// The follower holds the snapshot's last entry and entries after it (it
/// may have acknowledged them): it keeps them all and only moves its commit
/// index; installing the snapshot would drop indexes 4 and 5.
#[test]
fn a_log_that_holds_the_snapshots_last_entry_is_kept() {
    let mut f = node(N1, 2, log(&[2, 2, 2, 2]), 2);
    settled(&mut f);
    f.step(msg(N0, N1, 2, snapshot_msg(LogId::new(2, 3), 1)), at(10));
    let ready = settled(&mut f);
    assert!(ready.snapshot.is_none(), "nothing to install");
    assert_eq!(f.last_log_id(), LogId::new(2, 5));
    assert_eq!(f.commit_index(), LogIndex(3));
    let applied: Vec<LogIndex> = ready.committed.iter().map(|e| e.index()).collect();
    assert_eq!(
        applied,
        [LogIndex(3)],
        "1 and 2 went out in the first ready"
    );
    assert_eq!(responses(&ready.messages), [(LogIndex(3), true)]);
}

/// A log that disagrees at the snapshot's last entry is replaced whole.
#[test]
fn a_log_that_conflicts_with_the_snapshot_is_replaced() {
    let mut f = node(N1, 3, log(&[2, 2, 2, 2]), 2);
    settled(&mut f);
    f.step(msg(N0, N1, 3, snapshot_msg(LogId::new(3, 3), 1)), at(10));
    let ready = settled(&mut f);
    let snap = ready.snapshot.expect("installed");
    assert_eq!(snap.meta.last, LogId::new(3, 3));
    assert_eq!(f.last_log_id(), LogId::new(3, 3));
    assert_eq!(f.commit_index(), LogIndex(3));
    assert!(ready.committed.is_empty(), "the snapshot replaces them");
    assert_eq!(responses(&ready.messages), [(LogIndex(3), true)]);
}

/// A log shorter than the snapshot is replaced too.
#[test]
fn a_log_behind_the_snapshot_is_replaced() {
    let mut f = node(N1, 2, log(&[2]), 2);
    settled(&mut f);
    f.step(msg(N0, N1, 2, snapshot_msg(LogId::new(2, 6), 1)), at(10));
    let ready = settled(&mut f);
    assert!(ready.snapshot.is_some());
    assert_eq!(f.last_log_id(), LogId::new(2, 6));
}

/// A compaction does not free what it drops: the next `Ready` hands the
/// dropped entries (and the snapshot data it replaced) to the caller, which
/// frees them off its loop; the log keeps only what follows the snapshot.
#[test]
fn a_compaction_hands_over_what_it_drops() {
    let mut f = node(N1, 2, log(&[2, 2, 2, 2]), 5);
    let ready = settled(&mut f);
    assert_eq!(ready.committed.len(), 5);
    assert!(ready.released.is_empty());
    f.compact(LogIndex(3), Bytes::from_static(b"first"));
    let released = settled(&mut f).released;
    let dropped: Vec<u64> = released.entries.iter().map(|e| e.index().0).collect();
    assert_eq!(dropped, [1, 2, 3]);
    assert!(released.snapshots.is_empty(), "no earlier snapshot");
    f.compact(LogIndex(5), Bytes::from_static(b"second"));
    let released = settled(&mut f).released;
    let dropped: Vec<u64> = released.entries.iter().map(|e| e.index().0).collect();
    assert_eq!(dropped, [4, 5]);
    assert_eq!(released.snapshots, [Bytes::from_static(b"first")]);
    assert!(settled(&mut f).released.is_empty(), "handed over once");
    assert_eq!(f.last_log_id(), LogId::new(2, 5));
}
