//! Reading a data directory back: identity, newest snapshot, and a replay of
//! every WAL record in order. Read-only: the caller (open) decides whether to
//! cut a torn tail; `inspect` never does.

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
    };
    let mut torn = None;
    let mut warnings = Vec::new();
    let mut active_len = 0;
    for (i, &first) in segments.iter().enumerate() {
        let path = wal_dir.join(segment_name(first));
        let data = fs::read(&path).map_err(super::error::io_err(&path))?;
        let is_last = i + 1 == segments.len();
        replay.segment_has_hard_state = false;
        let cut = record::scan(&path, &data, is_last, |off, rec| {
            replay.apply(&path, off, rec)
        })?;
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
}

impl Replay {
    fn apply(&mut self, path: &Path, off: u64, rec: Record) -> Result<(), StorageError> {
        let e = match rec {
            Record::HardState(hs) => {
                self.hard_state = hs;
                self.segment_has_hard_state = true;
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
            return Err(corrupt(path, off, reason));
        }
        if i <= self.last {
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
