//! `Storage::install_snapshot`: the whole log goes, the hard state stays, and
//! a crash at any step recovers either the old or the new state.

use super::*;

/// Log 1..=last in small segments, hard state (3, vote 1, commit 2), synced.
fn log_of(dir: &Path, last: u64) -> Storage {
    let (mut s, _) = Storage::open_with(dir, small_segments()).unwrap();
    s.append(&entries(1, 1..=last)).unwrap();
    s.set_hard_state(hard_state(3, Some(1), 2)).unwrap();
    s.sync().unwrap();
    s
}

/// Copies of the files directly in `dir` (name, bytes).
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

fn put_back(files: &[(PathBuf, Vec<u8>)]) {
    for (p, b) in files {
        fs::write(p, b).unwrap();
    }
}

/// Undoes steps 3 and 2 of an install of the snapshot `installed`: the old
/// segments come back and the new snapshot goes (its marker segment stays).
fn undo_install(dir: &Path, old_wal: &[(PathBuf, Vec<u8>)], installed: LogId) {
    put_back(old_wal);
    let snap = dir.join("snap").join(snapshot::file_name(installed));
    fs::remove_file(snap).unwrap();
}

#[test]
fn install_below_last_index_drops_the_suffix_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 60);
    assert!(s.segments().len() > 2, "{:?}", s.segments());
    let last_old = *s.segments().last().unwrap();
    s.install_snapshot(&snap(2, 5)).unwrap();
    assert_eq!(s.segments().len(), 1);
    assert!(s.segments()[0] > last_old, "named past every old segment");
    // Entries 7.. would leave a gap; 6 is the next index.
    assert!(matches!(
        s.append(&entries(2, 7..=7)),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.append(&entries(2, 5..=5)),
        Err(StorageError::Invalid(_))
    ));
    drop(s);
    let (s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(2, 5)));
    assert!(
        rec.persisted.entries.is_empty(),
        "{:?}",
        rec.persisted.entries
    );
    assert_eq!(rec.persisted.hard_state, hard_state(3, Some(1), 2));
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    assert_eq!(s.segments().len(), 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    let snaps: Vec<_> = fs::read_dir(dir.path().join("snap")).unwrap().collect();
    assert_eq!(snaps.len(), 1);
}

#[test]
fn install_at_or_above_last_index() {
    for (last, at) in [(4, 20), (4, 4), (0, 9)] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = log_of(dir.path(), last);
        s.install_snapshot(&snap(2, at)).unwrap();
        drop(s);
        let (mut s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
        assert_eq!(rec.persisted.snapshot, Some(snap(2, at)), "{last} {at}");
        assert!(rec.persisted.entries.is_empty(), "{last} {at}");
        assert_eq!(rec.persisted.hard_state, hard_state(3, Some(1), 2));
        s.append(&entries(2, at + 1..=at + 2)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
        assert_eq!(rec.persisted.entries, entries(2, at + 1..=at + 2));
    }
}

#[test]
fn install_rejects_a_snapshot_behind_the_saved_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 10);
    s.save_snapshot(&snap(1, 6)).unwrap();
    for at in [0, 5] {
        assert!(matches!(
            s.install_snapshot(&snap(1, at)),
            Err(StorageError::Invalid(_))
        ));
    }
    // Still usable; the same index is accepted (and drops 7..=10).
    s.install_snapshot(&snap(1, 6)).unwrap();
    drop(s);
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(1, 6)));
    assert!(rec.persisted.entries.is_empty());
}

#[test]
fn hard_state_survives_install_even_if_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 12);
    s.set_hard_state(hard_state(7, Some(2), 9)).unwrap(); // not synced
    s.install_snapshot(&snap(7, 30)).unwrap();
    drop(s);
    let (mut s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.hard_state, hard_state(7, Some(2), 9));
    // And later hard states keep winning over the one the fresh segment starts with.
    s.set_hard_state(hard_state(8, None, 30)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.hard_state, hard_state(8, None, 30));
}

#[test]
fn append_after_install_survives_restarts_rolls_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 15);
    s.install_snapshot(&snap(2, 8)).unwrap();
    s.append(&entries(2, 9..=30)).unwrap(); // rolls several times
    s.sync().unwrap();
    assert!(s.segments().len() > 1);
    drop(s);
    let (mut s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.entries, entries(2, 9..=30));
    // Overwriting a suffix and compacting still work after an install.
    s.append(&entries(3, 25..=26)).unwrap();
    s.save_snapshot(&snap(2, 20)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (mut s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    let mut want = entries(2, 21..=24);
    want.extend(entries(3, 25..=26));
    assert_eq!(rec.persisted.entries, want);
    assert_eq!(rec.persisted.snapshot, Some(snap(2, 20)));
    // A second install.
    s.install_snapshot(&snap(4, 22)).unwrap();
    s.append(&entries(4, 23..=23)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.entries, entries(4, 23..=23));
    assert_eq!(rec.persisted.snapshot, Some(snap(4, 22)));
}

/// Crash during step 3: the snapshot and the fresh segment are durable, but
/// the old segments (with entries past the snapshot, some named after its
/// index) are still there, in full or in part.
#[test]
fn crash_before_old_segments_are_deleted_recovers_the_new_state() {
    // Every old segment, only the last (a gap before the marker), only the first.
    for keep in ["all", "last", "first"] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = log_of(dir.path(), 60);
        let old = files_in(&dir.path().join("wal"));
        assert!(old.len() > 2);
        s.install_snapshot(&snap(2, 3)).unwrap();
        drop(s);
        let back = match keep {
            "last" => &old[old.len() - 1..],
            "first" => &old[..1],
            _ => &old[..],
        };
        put_back(back);
        assert_eq!(segment_files(dir.path()).len(), back.len() + 1);

        let rec = Storage::inspect(dir.path()).unwrap();
        assert!(
            rec.persisted.entries.is_empty(),
            "{:?}",
            rec.persisted.entries
        );
        assert_eq!(rec.persisted.snapshot, Some(snap(2, 3)));
        let (mut s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
        assert!(rec.persisted.entries.is_empty());
        assert_eq!(rec.persisted.hard_state, hard_state(3, Some(1), 2));
        assert!(
            rec.warnings.iter().any(|w| w.contains("obsolete")),
            "{:?}",
            rec.warnings
        );
        assert_eq!(segment_files(dir.path()).len(), 1, "old segments deleted");
        s.append(&entries(2, 4..=5)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
        assert_eq!(rec.persisted.entries, entries(2, 4..=5));
        assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    }
}

/// Crash during step 2: the fresh segment with its marker is durable, the
/// snapshot is not (only a temp file, or nothing). The old state comes back
/// exactly, and the marker is gone so a later snapshot cannot wake it.
#[test]
fn crash_before_the_snapshot_is_durable_recovers_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 12);
    s.save_snapshot(&snap(1, 2)).unwrap();
    let old_wal = files_in(&dir.path().join("wal"));
    let old_snap = files_in(&dir.path().join("snap"));
    let before = Storage::inspect(dir.path()).unwrap().persisted;
    s.install_snapshot(&snap(2, 5)).unwrap();
    drop(s);
    undo_install(dir.path(), &old_wal, LogId::new(2, 5));
    put_back(&old_snap);
    assert_eq!(segment_files(dir.path()).len(), old_wal.len() + 1);

    let rec = Storage::inspect(dir.path()).unwrap();
    assert_eq!(rec.persisted, before);
    let (mut s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted, before);
    assert!(
        rec.warnings.iter().any(|w| w.contains("rolled back")),
        "{:?}",
        rec.warnings
    );
    assert_eq!(files_in(&dir.path().join("wal")), old_wal);
    // The old log carries on; a snapshot past the marker's index keeps the
    // entries after it.
    s.append(&entries(1, 13..=14)).unwrap();
    s.save_snapshot(&snap(1, 6)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.entries, entries(1, 7..=14));
    assert_eq!(rec.persisted.hard_state, hard_state(3, Some(1), 2));
}

/// A crash during step 1 leaves a torn marker: the old state, as after a roll.
#[test]
fn torn_restart_marker_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 12);
    let before = Storage::inspect(dir.path()).unwrap().persisted;
    let old_wal = files_in(&dir.path().join("wal"));
    s.install_snapshot(&snap(2, 5)).unwrap();
    drop(s);
    undo_install(dir.path(), &old_wal, LogId::new(2, 5));
    let fresh = segment_files(dir.path()).pop().unwrap();
    let marker = record_offsets(&fresh)[1];
    let len = fs::metadata(&fresh).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&fresh).unwrap();
    f.set_len(marker + (len - marker) / 2).unwrap();
    drop(f);
    let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted, before);
    assert!(
        rec.warnings.iter().any(|w| w.contains("torn")),
        "{:?}",
        rec.warnings
    );
}

#[test]
fn records_after_a_dormant_marker_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = log_of(dir.path(), 6);
    s.install_snapshot(&snap(2, 5)).unwrap();
    s.append(&entries(2, 6..=6)).unwrap();
    s.sync().unwrap();
    drop(s);
    fs::remove_file(
        dir.path()
            .join("snap")
            .join(snapshot::file_name(LogId::new(2, 5))),
    )
    .unwrap();
    let tree = snapshot_tree(dir.path());
    let err = Storage::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("unfinished snapshot install"), "{err}");
    assert_eq!(snapshot_tree(dir.path()), tree, "open changed nothing");
}
