//! Reading a data directory back: identity, newest snapshot, and a replay of
//! every WAL record in order. Read-only: the caller (open) decides whether to
//! cut a torn tail or delete leftover segments; `inspect` never does.
//!
//! Restart markers (`Record::Restart(snap)`, see `Storage::install_snapshot`)
//! are judged against the recovered snapshot:
//! * effective if that snapshot's index is at least `snap.index`: every entry
//!   replayed so far is void, the log continues at `snap.index + 1`, and the
//!   segments before the marker's one are obsolete (`Recovery::obsolete`);
//! * otherwise dormant: the install crashed before its snapshot was durable.
//!   Its segment must be the last one and hold nothing after the marker; it
//!   is rolled back (`Recovery::obsolete`, replay state as if it were absent).
//!   The hard state it starts with equals the synced one before it.

use super::error::{StorageError, corrupt};
use super::record::{self, Record};
use super::wal::{WalState, list_segments, segment_name};
use super::{Identity, Persisted, identity, snapshot};
use crate::raft::{Entry, HardState};
use std::fs;
use std::path::{Path, PathBuf};

pub(crate) struct Recovery {
    pub identity: Option<Identity>,
    pub persisted: Persisted,
    pub wal: WalState,
    /// Snapshot files older than the newest (a crash before their deletion).
    pub stale_snapshots: Vec<PathBuf>,
    pub snapshot_path: Option<PathBuf>,
    /// A torn tail in the last segment: (file, offset to cut at).
    pub torn: Option<(PathBuf, u64)>,
    /// Segments to delete on open: those before an effective restart marker,
    /// or the segment of a dormant one. Already left out of `wal.segments`.
    pub obsolete: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

pub(crate) fn recover(dir: &Path) -> Result<Recovery, StorageError> {
    let identity = identity::read(dir)?;
    let mut snaps = snapshot::list(&dir.join("snap"))?;
    let newest = snaps.pop();
    let stale_snapshots = snaps.into_iter().map(|(_, p)| p).collect();
    let snap = match &newest {
        Some((id, path)) => Some(snapshot::read(path, *id)?),
        None => None,
    };
    let floor = snap.as_ref().map_or(0, |s| s.meta.last.index.0);

    let wal_dir = dir.join("wal");
    let segments = list_segments(&wal_dir)?;
    if segments.is_empty() && (snap.is_some() || identity.is_some()) {
        return Err(corrupt(
            &wal_dir,
            0,
            "no WAL segment, yet an identity or snapshot exists: the hard state (term, vote) is lost",
        ));
    }
    let mut replay = Replay {
        floor,
        last: 0,
        entries: Vec::new(),
        hard_state: HardState::default(),
        segment_has_hard_state: false,
        restarted: false,
        dormant: None,
        gap: None,
    };
    let mut torn = None;
    let mut warnings = Vec::new();
    let mut active_len = 0;
    // Index into `segments` of the first one still needed.
    let mut keep_from = 0;
    // (active_len, segment_has_hard_state) of the segment before the current.
    let mut previous = (0, false);
    for (i, &first) in segments.iter().enumerate() {
        let path = wal_dir.join(segment_name(first));
        let data = fs::read(&path).map_err(super::error::io_err(&path))?;
        let is_last = i + 1 == segments.len();
        previous = (active_len, replay.segment_has_hard_state);
        replay.segment_has_hard_state = false;
        replay.restarted = false;
        let cut = record::scan(&path, &data, is_last, |off, rec| {
            replay.apply(&path, off, rec)
        })?;
        if replay.restarted {
            keep_from = i;
        }
        if replay.dormant.is_some() && !is_last {
            let reason = "unfinished snapshot install in a segment that is not the last";
            return Err(corrupt(&path, replay.dormant.unwrap_or_default(), reason));
        }
        active_len = data.len() as u64;
        if let Some(t) = cut {
            warnings.push(format!(
                "{}: torn record at byte offset {} ({}); {} trailing bytes dropped",
                path.display(),
                t.offset,
                t.reason,
                data.len() as u64 - t.offset
            ));
            active_len = t.offset;
            torn = Some((path, t.offset));
        }
    }
    if let Some(e) = replay.gap {
        return Err(e);
    }
    let mut segments = segments;
    let mut obsolete: Vec<PathBuf> = segments
        .drain(..keep_from)
        .map(|first| wal_dir.join(segment_name(first)))
        .collect();
    if !obsolete.is_empty() {
        warnings.push(format!(
            "{} WAL segment(s) before a completed snapshot install are obsolete",
            obsolete.len()
        ));
    }
    if let Some(off) = replay.dormant {
        let last = segments.pop().unwrap_or_default();
        let path = wal_dir.join(segment_name(last));
        if segments.is_empty() {
            let reason = "unfinished snapshot install in the only segment";
            return Err(corrupt(&path, off, reason));
        }
        warnings.push(format!(
            "{}: snapshot install interrupted before its snapshot was durable; rolled back",
            path.display()
        ));
        (active_len, replay.segment_has_hard_state) = previous;
        torn = None;
        obsolete.push(path);
    }
    Ok(Recovery {
        identity,
        persisted: Persisted {
            hard_state: replay.hard_state,
            snapshot: snap,
            entries: replay.entries,
        },
        wal: WalState {
            segments,
            active_len,
            active_has_hard_state: replay.segment_has_hard_state,
            last_index: replay.last,
            floor,
            hard_state: replay.hard_state,
        },
        stale_snapshots,
        snapshot_path: newest.map(|(_, p)| p),
        torn,
        obsolete,
        warnings,
    })
}

/// The logical log rebuilt record by record. Only entries after the snapshot
/// (`floor`) are kept; they are always contiguous from `floor + 1`.
struct Replay {
    floor: u64,
    last: u64,
    entries: Vec<Entry>,
    hard_state: HardState,
    segment_has_hard_state: bool,
    /// The current segment holds an effective restart marker.
    restarted: bool,
    /// Offset of a dormant restart marker (in the current segment).
    dormant: Option<u64>,
    /// The first gap in the entry indices not yet voided by an effective
    /// restart marker after it. A crash while an install deletes the old
    /// segments can leave any subset of them, so a gap before the marker is
    /// expected; one that no marker voids is corruption.
    gap: Option<StorageError>,
}

impl Replay {
    fn apply(&mut self, path: &Path, off: u64, rec: Record) -> Result<(), StorageError> {
        if self.dormant.is_some() {
            let reason = "record after an unfinished snapshot install";
            return Err(corrupt(path, off, reason));
        }
        let e = match rec {
            Record::HardState(hs) => {
                self.hard_state = hs;
                self.segment_has_hard_state = true;
                return Ok(());
            }
            Record::Restart(snap) if snap.index.0 <= self.floor => {
                self.entries.clear();
                self.gap = None;
                self.last = snap.index.0;
                self.restarted = true;
                return Ok(());
            }
            Record::Restart(_) => {
                self.dormant = Some(off);
                return Ok(());
            }
            Record::Entry(e) => e,
        };
        let i = e.index().0;
        // The log may continue right after the snapshot even if it ended before it.
        let limit = self.last.max(self.floor) + 1;
        if i > limit {
            let reason = format!(
                "log gap: entry {i} follows entry {} (snapshot at {})",
                self.last, self.floor
            );
            self.gap.get_or_insert(corrupt(path, off, reason));
            // Carry on as if the log restarted here: a later marker voids it all.
            self.entries.clear();
        } else if i <= self.last {
            // Logical truncation: this entry supersedes the stored suffix.
            let keep = i.saturating_sub(self.floor + 1) as usize;
            self.entries.truncate(keep);
        }
        if i > self.floor {
            self.entries.push(e);
        }
        self.last = i;
        Ok(())
    }
}
