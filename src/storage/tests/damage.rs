use super::*;
use std::io::Write;

/// A directory with entries 1..=n, synced, in one segment.
fn written(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path()).unwrap();
    s.set_hard_state(hard_state(1, Some(2), 0)).unwrap();
    s.append(&entries(1, 1..=n)).unwrap();
    s.sync().unwrap();
    dir
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = segment_files(dir);
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

#[test]
fn torn_tail_is_cut_with_warning() {
    let dir = written(5);
    let seg = only_segment(dir.path());
    let last = *record_offsets(&seg).last().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.entries, entries(1, 1..=4));
    assert_eq!(rec.warnings.len(), 1, "{:?}", rec.warnings);
    let w = &rec.warnings[0];
    assert!(
        w.contains(&seg.display().to_string()) && w.contains(&format!("offset {last}")),
        "{w}"
    );
    assert_eq!(fs::metadata(&seg).unwrap().len(), last);
    drop(_s);
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    assert_eq!(rec.persisted.entries, entries(1, 1..=4));
}

#[test]
fn zero_filled_tail_is_cut() {
    let dir = written(3);
    let seg = only_segment(dir.path());
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0; 100])
        .unwrap();
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.entries, entries(1, 1..=3));
    assert!(
        rec.warnings[0].contains(&format!("offset {len}")),
        "{:?}",
        rec.warnings
    );
}

fn expect_corrupt(dir: &Path, path: &Path, offset: u64) {
    for result in [Storage::open(dir).map(|(_, r)| r), Storage::inspect(dir)] {
        let err = result.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("byte offset {offset}")), "{msg}");
    }
}

#[test]
fn flipped_byte_in_the_middle_is_an_error() {
    let dir = written(5);
    let seg = only_segment(dir.path());
    let before = fs::read(&seg).unwrap();
    let third = record_offsets(&seg)[3];
    let mut bytes = before.clone();
    bytes[third as usize + 10] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    expect_corrupt(dir.path(), &seg, third);
    // A failed open repairs nothing.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[test]
fn flipped_byte_in_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Storage::open_with(dir.path(), small_segments()).unwrap();
        for i in 1..=30 {
            s.append(&entries(1, i..=i)).unwrap();
        }
        s.sync().unwrap();
    }
    let seg = segment_files(dir.path())[0].clone();
    let last = *record_offsets(&seg).last().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let end = bytes.len();
    bytes[end - 1] ^= 1; // the final record of a segment that is not the last
    fs::write(&seg, &bytes).unwrap();
    expect_corrupt(dir.path(), &seg, last);
}

#[test]
fn bad_length_before_intact_records_is_an_error() {
    let dir = written(5);
    let seg = only_segment(dir.path());
    let second = record_offsets(&seg)[2];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[second as usize + 2] = 0x7f; // length now runs past the end of the file
    fs::write(&seg, &bytes).unwrap();
    expect_corrupt(dir.path(), &seg, second);
}

#[test]
fn index_gap_on_disk_is_an_error() {
    let dir = written(3);
    let seg = only_segment(dir.path());
    let gap_at = fs::metadata(&seg).unwrap().len();
    let mut rec = Vec::new();
    record::encode_entry(&entry(1, 5), &mut rec);
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&rec)
        .unwrap();
    expect_corrupt(dir.path(), &seg, gap_at);
}

#[test]
fn inspect_does_not_modify() {
    let dir = written(5);
    let seg = only_segment(dir.path());
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    fs::write(dir.path().join("snap/x.snap.tmp"), b"partial").unwrap();
    let before = snapshot_tree(dir.path());
    let rec = Storage::inspect(dir.path()).unwrap();
    assert_eq!(rec.persisted.entries, entries(1, 1..=4));
    assert_eq!(rec.warnings.len(), 1, "{:?}", rec.warnings);
    let text = dump(dir.path()).unwrap();
    assert!(text.contains("warning:"), "{text}");
    assert_eq!(snapshot_tree(dir.path()), before);
}

#[test]
fn damaged_identity_is_an_error() {
    let dir = written(1);
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        let id = Identity {
            cluster_id: "abc".into(),
            node_id: 12,
            incarnation: 1,
        };
        s.set_identity(&id).unwrap();
    }
    let path = dir.path().join("identity");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("node_id=12", "node_id=13");
    fs::write(&path, text).unwrap();
    let err = Storage::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("identity") && err.contains("checksum"),
        "{err}"
    );
}
