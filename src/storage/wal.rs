//! The segmented write-ahead log: writing, rolling and deleting segments.
//!
//! Invariants that make deletion safe with only segment names in memory:
//! * names strictly increase in creation order (so replay order = name order);
//! * a segment is named at least one past every live index before it, so every
//!   entry still live in segments `..k` has an index below `name(k+1)`;
//! * every segment starts with the hard state current when it was created, so
//!   the newest hard state survives the deletion of all older segments;
//! * a segment is fsynced before its successor is created, so only the last
//!   segment can end in a torn record;
//! * a restart marker (`Record::Restart`, written by `begin_install`) is the
//!   second record of a fresh segment; once effective, no entry before it is
//!   live, so every older segment may go.

use super::DiskBytes;
use super::error::{StorageError, io_err, sync_err};
use super::fsutil::sync_dir;
use super::record::{self, MAX_PAYLOAD};
use crate::raft::{Entry, HardState, LogId};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const SEGMENT_SUFFIX: &str = ".log";

pub(crate) fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

/// `Some(first index)` for a well-formed segment file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Segment first indices in `wal_dir`, ascending (empty if the dir is missing).
/// A `.log` file with a malformed name is an error: it may hold data.
pub(crate) fn list_segments(wal_dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut firsts = Vec::new();
    let Ok(rd) = fs::read_dir(wal_dir) else {
        return Ok(firsts);
    };
    for ent in rd {
        let ent = ent.map_err(io_err(wal_dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        match parse_segment_name(&name) {
            // Segments are named by index, and the next one past the last.
            Some(first) => {
                super::codec::stored(first, "first index").map_err(|e| {
                    StorageError::Invalid(format!("WAL segment {}: {e}", ent.path().display()))
                })?;
                firsts.push(first);
            }
            None => {
                return Err(StorageError::Invalid(format!(
                    "unexpected WAL file {}: not named <20-digit index>.log",
                    ent.path().display()
                )));
            }
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Size of buffered writes before they reach the kernel.
const WRITE_BUFFER: usize = 256 * 1024;

pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// First indices (names) of the segments, ascending; the last one is active.
    segments: Vec<u64>,
    writer: BufWriter<File>,
    /// Bytes in the active segment, including those still buffered.
    active_len: u64,
    /// Index of the last live entry (0 if none); may be below `floor`.
    last_index: u64,
    /// Index of the saved snapshot: the log is compacted up to here.
    floor: u64,
    hard_state: HardState,
    scratch: Vec<u8>,
    unsynced: bool,
    /// Sizes of the sealed segments (all but the active one), in order.
    sealed: Vec<u64>,
    sealed_total: u64,
    /// Where the segments' total size is published (see `DiskBytes`).
    bytes: Arc<DiskBytes>,
}

/// What recovery learned about the WAL, needed to continue writing it.
pub(crate) struct WalState {
    pub segments: Vec<u64>,
    pub active_len: u64,
    pub active_has_hard_state: bool,
    pub last_index: u64,
    pub floor: u64,
    pub hard_state: HardState,
}

impl Wal {
    /// Continues the log described by `st`, starting one if there is none.
    pub(crate) fn resume(
        dir: &Path,
        segment_bytes: u64,
        st: WalState,
        bytes: Arc<DiskBytes>,
    ) -> Result<Wal, StorageError> {
        let Some(&active) = st.segments.last() else {
            let first = st.last_index.max(st.floor) + 1;
            let writer = create_segment(dir, first)?;
            let mut wal = Wal::new(dir, segment_bytes, vec![first], writer, 0, st);
            wal.bytes = bytes;
            wal.write_hard_state_record()?;
            wal.sync()?;
            return Ok(wal);
        };
        let path = dir.join(segment_name(active));
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let has_hs = st.active_has_hard_state;
        let (segments, len) = (st.segments.clone(), st.active_len);
        // Once at open: from here on the sizes are counted as written.
        let mut sealed = Vec::with_capacity(segments.len());
        for &first in &segments[..segments.len() - 1] {
            let path = dir.join(segment_name(first));
            sealed.push(fs::metadata(&path).map_err(io_err(&path))?.len());
        }
        let mut wal = Wal::new(dir, segment_bytes, segments, writer, len, st);
        wal.sealed_total = sealed.iter().sum();
        wal.sealed = sealed;
        wal.bytes = bytes;
        wal.publish();
        if !has_hs {
            // A crash during a roll can leave the new segment without its
            // leading hard state; restore the invariant before any deletion.
            wal.write_hard_state_record()?;
            wal.sync()?;
        }
        Ok(wal)
    }

    fn new(
        dir: &Path,
        segment_bytes: u64,
        segments: Vec<u64>,
        writer: BufWriter<File>,
        len: u64,
        st: WalState,
    ) -> Wal {
        Wal {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            segments,
            writer,
            active_len: len,
            last_index: st.last_index,
            floor: st.floor,
            hard_state: st.hard_state,
            scratch: Vec::new(),
            unsynced: false,
            sealed: Vec::new(),
            sealed_total: 0,
            bytes: Arc::default(),
        }
    }

    /// Publishes the segments' total size, buffered bytes included.
    fn publish(&self) {
        self.bytes.set_wal(self.sealed_total + self.active_len);
    }

    /// Forgets the sizes of the first `n` segments, just deleted.
    fn forget_sealed(&mut self, n: usize) {
        self.sealed_total -= self.sealed.drain(..n).sum::<u64>();
        self.publish();
    }

    fn active_path(&self) -> PathBuf {
        let active = self.segments.last().copied().unwrap_or_default();
        self.dir.join(segment_name(active))
    }

    /// Checks `entries` continue the log, then buffers them (superseding any
    /// stored entries from `entries[0].index()` on).
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let (start, limit) = (first.index().0, self.last_index.max(self.floor) + 1);
        if start <= self.floor || start > limit {
            return Err(StorageError::Invalid(format!(
                "append at index {start}: must be in {}..={limit} (snapshot at {}, last entry {})",
                self.floor + 1,
                self.floor,
                self.last_index
            )));
        }
        if let Some(w) = entries
            .windows(2)
            .find(|w| w[1].index().0 != w[0].index().0 + 1)
        {
            return Err(StorageError::Invalid(format!(
                "entries not consecutive: {} followed by {}",
                w[0].index(),
                w[1].index()
            )));
        }
        for e in entries {
            if self.active_len >= self.segment_bytes {
                self.roll(e.index().0)?;
            }
            record::encode_entry(e, &mut self.scratch);
            if self.scratch.len() - record::HEADER_LEN > MAX_PAYLOAD {
                return Err(StorageError::Invalid(format!(
                    "entry {} is too large",
                    e.index()
                )));
            }
            self.write_scratch()?;
            self.last_index = e.index().0;
        }
        Ok(())
    }

    pub(crate) fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.hard_state = hs;
        self.write_hard_state_record()
    }

    fn write_hard_state_record(&mut self) -> Result<(), StorageError> {
        record::encode_hard_state(self.hard_state, &mut self.scratch);
        self.write_scratch()
    }

    fn write_scratch(&mut self) -> Result<(), StorageError> {
        // Once per record: the path is built only if the write fails.
        if let Err(e) = self.writer.write_all(&self.scratch) {
            return Err(io_err(&self.active_path())(e));
        }
        self.active_len += self.scratch.len() as u64;
        self.unsynced = true;
        self.publish();
        Ok(())
    }

    /// Makes everything buffered durable with a single fdatasync.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        if !self.unsynced {
            return Ok(());
        }
        let path = self.active_path();
        self.writer.flush().map_err(io_err(&path))?;
        self.writer.get_ref().sync_data().map_err(sync_err(&path))?;
        self.unsynced = false;
        Ok(())
    }

    /// Seals the active segment and starts a new one for entries from `first`.
    fn roll(&mut self, first: u64) -> Result<(), StorageError> {
        self.start_segment(first)?;
        self.sync()
    }

    /// `roll` without the final sync: the new segment holds the (buffered)
    /// current hard state.
    fn start_segment(&mut self, first: u64) -> Result<(), StorageError> {
        self.sync()?;
        let active = self.segments.last().copied().unwrap_or_default();
        // Name past every live index and past the previous name (see module doc).
        let name = first.max(self.last_index + 1).max(active + 1);
        self.writer = create_segment(&self.dir, name)?;
        self.segments.push(name);
        self.sealed.push(self.active_len);
        self.sealed_total += self.active_len;
        self.active_len = 0;
        self.write_hard_state_record()
    }

    /// First step of installing the snapshot `snap`: durably starts a fresh
    /// segment (named past every existing one) holding the current hard
    /// state and a restart marker for `snap`. The marker stays dormant until
    /// that snapshot is durable; see `Storage::install_snapshot`.
    pub(crate) fn begin_install(&mut self, snap: LogId) -> Result<(), StorageError> {
        self.start_segment(snap.index.0 + 1)?;
        record::encode_restart(snap, &mut self.scratch);
        self.write_scratch()?;
        self.sync()
    }

    /// Last step of an install, once the snapshot at `index` is durable:
    /// forgets every entry and deletes every segment but the fresh one, so
    /// the log continues at `index + 1`.
    pub(crate) fn finish_install(&mut self, index: u64) -> Result<(), StorageError> {
        self.floor = index;
        self.last_index = index;
        let old = self.segments.len().saturating_sub(1);
        for &first in &self.segments[..old] {
            let path = self.dir.join(segment_name(first));
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        self.segments.drain(..old);
        self.forget_sealed(old);
        sync_dir(&self.dir)
    }

    /// The log is now covered up to `index` by a durable snapshot: deletes the
    /// segments that hold nothing after it.
    pub(crate) fn compact(&mut self, index: u64) -> Result<(), StorageError> {
        self.floor = self.floor.max(index);
        if index >= self.last_index {
            // Nothing live remains: start afresh so every old segment can go,
            // and so the next append (index + 1) follows the snapshot.
            self.roll(index + 1)?;
        }
        // Segment k may go when all its live entries are below name(k+1) <= index + 1.
        let keep_from = self
            .segments
            .windows(2)
            .take_while(|w| w[1] <= index + 1)
            .count();
        if keep_from == 0 {
            return Ok(());
        }
        for &first in &self.segments[..keep_from] {
            let path = self.dir.join(segment_name(first));
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        self.segments.drain(..keep_from);
        self.forget_sealed(keep_from);
        sync_dir(&self.dir)
    }

    /// Index of the saved snapshot (0 if none).
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    pub(crate) fn segments(&self) -> &[u64] {
        &self.segments
    }
}

/// Creates an empty segment file and makes its directory entry durable.
fn create_segment(dir: &Path, first: u64) -> Result<BufWriter<File>, StorageError> {
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER, file))
}
