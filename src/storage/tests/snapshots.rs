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

/// Copies every file under `from` to the same place under `to`: what a
/// crash at this instant would leave (everything written so far survives).
fn copy_tree(from: &Path, to: &Path) {
    for (path, bytes) in snapshot_tree(from) {
        let dest = to.join(path.strip_prefix(from).unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(dest, bytes).unwrap();
    }
}

fn big_snap(term: u64, index: u64, len: usize) -> Snapshot {
    let mut s = snap(term, index);
    s.data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    s
}

#[test]
fn crash_while_writing_a_snapshot_in_chunks_leaves_the_old_one_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let crashed = dir.path().join("crashed");
    let (mut s, _) = Storage::open(&data).unwrap();
    s.append(&entries(1, 1..=20)).unwrap();
    s.sync().unwrap();
    s.save_snapshot(&snap(1, 5)).unwrap();

    // A 300 KiB snapshot written in 64 KiB chunks; the world stops after
    // the third chunk is pushed to disk.
    let chunk = 64 << 10;
    let new = big_snap(1, 15, 300 << 10);
    let mut pushes = Vec::new();
    let path = snapshot::write_observed(&s.snapshot_dir(), &new, chunk, &mut |written| {
        pushes.push(written);
        if pushes.len() == 3 {
            copy_tree(&data, &crashed);
        }
    })
    .unwrap();
    assert_eq!(
        pushes,
        [1, 2, 3, 4].map(|n| n * chunk),
        "one push per chunk"
    );
    let tmp = crashed.join("snap").join(format!(
        "{}{}",
        snapshot::file_name(LogId::new(1, 15)),
        fsutil::TMP_SUFFIX
    ));
    assert_eq!(
        fs::metadata(&tmp).unwrap().len(),
        3 * chunk,
        "the crash came mid-write"
    );

    // After the crash: the old snapshot and the whole log, the half-written
    // file reported and removed.
    let (_c, rec) = Storage::open(&crashed).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(1, 5)));
    assert_eq!(rec.persisted.entries, entries(1, 6..=20));
    assert!(!tmp.exists());
    assert!(
        rec.warnings.iter().any(|w| w.contains("temp")),
        "{:?}",
        rec.warnings
    );

    // Without the crash the chunked file is whole and takes over.
    assert!(s.adopt_snapshot(15, &path).unwrap());
    drop(s);
    let (_s, rec) = Storage::open(&data).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(new));
    assert_eq!(rec.persisted.entries, entries(1, 16..=20));
}

#[test]
fn chunked_writer_pushes_every_full_chunk_and_keeps_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let chunk = 4096u64;
    let parts: Vec<Vec<u8>> = [0usize, 1, 4095, 4096, 3 * 4096 + 5, 7]
        .iter()
        .enumerate()
        .map(|(k, n)| vec![k as u8 + 1; *n])
        .collect();
    let mut pushes = Vec::new();
    let mut record = |written| pushes.push(written);
    let mut w = fsutil::ChunkedWriter::new(fs::File::create(&path).unwrap(), chunk, &mut record);
    for p in &parts {
        w.write(p).unwrap();
    }
    w.finish().sync_all().unwrap();
    let all: Vec<u8> = parts.concat();
    assert_eq!(fs::read(&path).unwrap(), all);
    let full = all.len() as u64 / chunk;
    assert_eq!(pushes, (1..=full).map(|n| n * chunk).collect::<Vec<_>>());
}
