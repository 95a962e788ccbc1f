use super::*;

#[test]
fn fresh_directory_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.identity, None);
    assert_eq!(rec.persisted, Persisted::default());
    assert!(rec.warnings.is_empty());
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity {
        cluster_id: "c-123".into(),
        node_id: 0,
        incarnation: 7,
    };
    let mut log = vec![
        Entry {
            id: LogId::new(1, 1),
            payload: Payload::config(Membership::new([NodeId(0), NodeId(1)])),
        },
        Entry {
            id: LogId::new(1, 2),
            payload: Payload::Noop,
        },
    ];
    log.extend(entries(1, 3..=5));
    let hs = hard_state(1, Some(0), 4);
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.set_identity(&id).unwrap();
        s.append(&log[..2]).unwrap();
        s.append(&log[2..]).unwrap();
        s.set_hard_state(hs).unwrap();
        s.sync().unwrap();
    }
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.identity, Some(id));
    assert_eq!(rec.persisted.hard_state, hs);
    assert_eq!(rec.persisted.entries, log);
    assert_eq!(rec.persisted.snapshot, None);
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

#[test]
fn overwrite_truncates_suffix() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.append(&entries(1, 1..=5)).unwrap();
        s.sync().unwrap();
        s.append(&entries(2, 3..=4)).unwrap();
        s.sync().unwrap();
    }
    let (mut s, rec) = Storage::open(dir.path()).unwrap();
    let mut want = entries(1, 1..=2);
    want.extend(entries(2, 3..=4));
    assert_eq!(rec.persisted.entries, want);
    // Truncation back to the very first entry, after a restart.
    s.append(&entries(3, 1..=1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.entries, entries(3, 1..=1));
}

#[test]
fn append_refuses_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path()).unwrap();
    s.append(&entries(1, 1..=3)).unwrap();
    let err = s.append(&entries(1, 5..=6)).unwrap_err();
    assert!(matches!(err, StorageError::Invalid(_)), "{err}");
    let mut holey = entries(1, 4..=4);
    holey.push(entry(1, 6));
    assert!(matches!(s.append(&holey), Err(StorageError::Invalid(_))));
    // Still usable: refusals write nothing.
    s.append(&entries(1, 4..=4)).unwrap();
    s.sync().unwrap();
}

#[test]
fn restart_after_roll_and_compaction_keeps_hard_state() {
    let dir = tempfile::tempdir().unwrap();
    let hs = hard_state(3, Some(1), 20);
    {
        let (mut s, _) = Storage::open_with(dir.path(), small_segments()).unwrap();
        // Set once, in the first segment, which compaction will delete.
        s.set_hard_state(hs).unwrap();
        for i in 1..=50 {
            s.append(&entries(3, i..=i)).unwrap();
            s.sync().unwrap();
        }
        assert!(s.segments().len() > 3, "{:?}", s.segments());
        s.save_snapshot(&snap(3, 30)).unwrap();
        assert!(s.segments()[0] <= 31, "{:?}", s.segments());
        assert!(
            s.segments()[0] > 1,
            "nothing was deleted: {:?}",
            s.segments()
        );
        assert_eq!(segment_files(dir.path()).len(), s.segments().len());
    }
    let (_s, rec) = Storage::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(rec.persisted.hard_state, hs);
    assert_eq!(rec.persisted.snapshot, Some(snap(3, 30)));
    assert_eq!(rec.persisted.entries, entries(3, 31..=50));
}

#[test]
fn snapshot_covering_the_whole_log_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.append(&entries(1, 1..=10)).unwrap();
        s.set_hard_state(hard_state(4, None, 10)).unwrap();
        s.sync().unwrap();
        // As installed from a leader: far beyond the local log.
        s.save_snapshot(&snap(4, 100)).unwrap();
        assert_eq!(s.segments(), &[101]);
        s.append(&entries(4, 101..=102)).unwrap();
        s.sync().unwrap();
    }
    let (_s, rec) = Storage::open(dir.path()).unwrap();
    assert_eq!(rec.persisted.snapshot, Some(snap(4, 100)));
    assert_eq!(rec.persisted.entries, entries(4, 101..=102));
    assert_eq!(rec.persisted.hard_state, hard_state(4, None, 10));
}

#[test]
fn codec_round_trips_and_rejects_bad_membership() {
    let e = Entry {
        id: LogId::new(2, 9),
        payload: Payload::config(Membership::new([NodeId(0), NodeId(4)])),
    };
    assert_eq!(entry_from_pb(entry_to_pb(&e)).unwrap(), e);
    let hs = hard_state(5, None, 3);
    assert_eq!(hard_state_from_pb(hard_state_to_pb(hs)), hs);
    let meta = snap(2, 9).meta;
    assert_eq!(
        snapshot_meta_from_pb(&snapshot_meta_to_pb(&meta)).unwrap(),
        meta
    );
    let dup = crate::pb::Membership {
        voters: vec![1, 1],
        learners: vec![],
    };
    assert!(membership_from_pb(&dup).is_err());
    let both = crate::pb::Membership {
        voters: vec![1],
        learners: vec![1],
    };
    assert!(membership_from_pb(&both).is_err());
}
