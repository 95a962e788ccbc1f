//! The byte counts published for the metrics match the files on disk as
//! segments are written, rolled and compacted, snapshots replace one
//! another, and a directory is reopened.

use super::*;

fn on_disk(dir: &Path, sub: &str) -> u64 {
    fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn counted_bytes_match_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = Storage::open_with(dir, small_segments()).unwrap();
    let bytes = s.disk_bytes();
    assert_eq!(bytes.wal(), on_disk(dir, "wal"));
    assert_eq!(bytes.snapshot(), 0);

    s.append(&entries(1, 1..=40)).unwrap();
    s.set_hard_state(hard_state(1, Some(0), 40)).unwrap();
    s.sync().unwrap();
    assert!(s.segments().len() > 3, "{:?}", s.segments());
    assert_eq!(bytes.wal(), on_disk(dir, "wal"));

    s.save_snapshot(&snap(1, 30)).unwrap();
    let after_compaction = on_disk(dir, "wal");
    assert_eq!(bytes.wal(), after_compaction);
    assert_eq!(bytes.snapshot(), on_disk(dir, "snap"));
    assert!(bytes.snapshot() > 0);

    let big = Snapshot {
        data: Bytes::from(vec![7u8; 5000]),
        ..snap(1, 35)
    };
    s.save_snapshot(&big).unwrap();
    assert_eq!(bytes.snapshot(), on_disk(dir, "snap"));
    assert!(bytes.snapshot() > 5000);
    assert_eq!(bytes.wal(), on_disk(dir, "wal"));

    s.install_snapshot(&snap(2, 100)).unwrap();
    assert_eq!(bytes.wal(), on_disk(dir, "wal"));
    assert_eq!(bytes.snapshot(), on_disk(dir, "snap"));

    s.append(&entries(2, 101..=110)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (s, _) = Storage::open_with(dir, small_segments()).unwrap();
    let reopened = s.disk_bytes();
    assert_eq!(reopened.wal(), on_disk(dir, "wal"));
    assert_eq!(reopened.snapshot(), on_disk(dir, "snap"));
}
