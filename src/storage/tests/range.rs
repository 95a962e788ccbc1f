//! Terms and indices at or above 2^63 are refused, on disk and on write:
//! arithmetic on them (`index + 1`, the next segment's name) would overflow.

use super::*;
use crate::storage::record;

const TOO_BIG: u64 = 1 << 63;

/// A directory whose only segment, named `first`, holds `records`.
fn with_records(first: u64, records: &[Vec<u8>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("wal")).unwrap();
    let path = dir.path().join("wal").join(wal::segment_name(first));
    fs::write(path, records.concat()).unwrap();
    dir
}

fn entry_record(term: u64, index: u64) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_entry(&entry(term, index), &mut out);
    out
}

fn hard_state_record(term: u64, commit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_hard_state(hard_state(term, None, commit), &mut out);
    out
}

fn restart_record(term: u64, index: u64) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_restart(LogId::new(term, index), &mut out);
    out
}

/// Both `inspect` and `open` refuse `dir`, naming the range.
fn refused(dir: &Path) {
    for e in [
        Storage::inspect(dir).unwrap_err(),
        Storage::open(dir).unwrap_err(),
    ] {
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}

#[test]
fn the_largest_stored_values_are_accepted() {
    let max = MAX_STORED;
    let dir = with_records(1, &[hard_state_record(max, 0), entry_record(max, 1)]);
    let rec = Storage::inspect(dir.path()).unwrap();
    assert_eq!(rec.persisted.hard_state.term, Term(max));
    assert_eq!(rec.persisted.entries, vec![entry(max, 1)]);
}

#[test]
fn entry_terms_and_indices_from_2_63_are_refused() {
    refused(with_records(1, &[hard_state_record(1, 0), entry_record(TOO_BIG, 1)]).path());
    refused(with_records(1, &[hard_state_record(1, 0), entry_record(1, TOO_BIG)]).path());
    refused(with_records(1, &[hard_state_record(1, 0), entry_record(1, u64::MAX)]).path());
}

#[test]
fn hard_state_terms_and_commits_from_2_63_are_refused() {
    refused(with_records(1, &[hard_state_record(TOO_BIG, 0)]).path());
    refused(with_records(1, &[hard_state_record(1, u64::MAX)]).path());
}

#[test]
fn restart_markers_from_2_63_are_refused() {
    let hs = hard_state_record(1, 0);
    refused(with_records(1, &[hs.clone(), restart_record(TOO_BIG, 1)]).path());
    refused(with_records(1, &[hs, restart_record(1, u64::MAX)]).path());
}

/// The next segment is named one past the last, which must not wrap to 0
/// (segments replay in name order).
#[test]
fn segment_names_from_2_63_are_refused() {
    refused(with_records(TOO_BIG, &[hard_state_record(1, 0)]).path());
    refused(with_records(u64::MAX, &[hard_state_record(1, 0)]).path());
}

#[test]
fn snapshot_names_from_2_63_are_refused() {
    for (term, index) in [(TOO_BIG, 1), (1, TOO_BIG), (1, u64::MAX)] {
        let dir = with_records(1, &[hard_state_record(1, 0)]);
        let snap_dir = dir.path().join("snap");
        fs::create_dir_all(&snap_dir).unwrap();
        let name = snapshot::file_name(LogId::new(term, index));
        fs::write(snap_dir.join(name), b"").unwrap();
        refused(dir.path());
    }
}

#[test]
fn writes_from_2_63_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path()).unwrap();
    assert!(s.append(&[entry(TOO_BIG, 1)]).is_err());
    assert!(s.set_hard_state(hard_state(TOO_BIG, None, 0)).is_err());
    assert!(s.save_snapshot(&snap(1, TOO_BIG)).is_err());
    assert!(s.install_snapshot(&snap(TOO_BIG, 1)).is_err());
    assert!(write_snapshot_file(&s.snapshot_dir(), &snap(1, u64::MAX)).is_err());
    s.sync().unwrap();
    drop(s);
    let (_, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted, Persisted::default());
}
