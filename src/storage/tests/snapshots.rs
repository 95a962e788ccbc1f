use super::*;

#[test]
fn leftover_temp_snapshot_is_ignored_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.append(&entries(1, 1..=8)).unwrap();
        s.sync().unwrap();
        s.save_snapshot(&snap(1, 5)).unwrap();
    }
    // A crash while writing a newer snapshot leaves its temp file behind.
    let tmp = dir.path().join("snap").join(format!(
        "{}{}",
        snapshot::file_name(LogId::new(1, 8)),
        fsutil::TMP_SUFFIX
    ));
    fs::write(&tmp, b"half a snapshot").unwrap();
    let rec = Storage::inspect(dir.path()).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(1, 5)));
    assert_eq!(rec.persisted.entries, entries(1, 6..=8));
    assert!(tmp.exists());
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(1, 5)));
    assert!(!tmp.exists());
    assert!(
        rec.warnings.iter().any(|w| w.contains("temp")),
        "{:?}",
        rec.warnings
    );
}

#[test]
fn newer_snapshot_replaces_older() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path()).unwrap();
    s.append(&entries(1, 1..=8)).unwrap();
    s.save_snapshot(&snap(1, 3)).unwrap();
    s.save_snapshot(&snap(1, 6)).unwrap();
    let files: Vec<_> = fs::read_dir(dir.path().join("snap")).unwrap().collect();
    assert_eq!(files.len(), 1);
    assert!(matches!(
        s.save_snapshot(&snap(1, 4)),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.append(&entries(1, 6..=6)),
        Err(StorageError::Invalid(_))
    ));
    s.sync().unwrap();
    drop(s);
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(1, 6)));
    assert_eq!(rec.persisted.entries, entries(1, 7..=8));
}

#[test]
fn corrupt_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.append(&entries(1, 1..=4)).unwrap();
        s.save_snapshot(&snap(1, 4)).unwrap();
    }
    let path = dir
        .path()
        .join("snap")
        .join(snapshot::file_name(LogId::new(1, 4)));
    let mut bytes = fs::read(&path).unwrap();
    bytes[6] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = Storage::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn dump_renders_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.set_identity(&Identity {
            cluster_id: "prod-eu".into(),
            node_id: 2,
            incarnation: 3,
        })
        .unwrap();
        s.append(&entries(1, 1..=4)).unwrap();
        s.append(&[Entry {
            id: LogId::new(2, 5),
            payload: Payload::Noop,
        }])
        .unwrap();
        s.set_hard_state(hard_state(2, Some(1), 5)).unwrap();
        s.save_snapshot(&snap(1, 2)).unwrap();
        s.sync().unwrap();
    }
    let text = dump(dir.path()).unwrap();
    for want in [
        "cluster prod-eu node 2 incarnation 3",
        "term 2 vote 1 commit 5",
        "snapshot: last index 2 term 1, voters [0,1,2] learners []",
        "index 3 term 1 command 5 bytes \"cmd-3\"",
        "index 5 term 2 noop",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("index 2 term 1 command"), "{text}");
}
