//! The node's data directory on its PersistentVolume:
//!
//! ```text
//! <dir>/LOCK                          flock'ed by the running node (its pid)
//! <dir>/identity                      cluster id, node id, incarnation
//! <dir>/wal/<first index:020>.log     append-only segments of framed records
//! <dir>/snap/<term:020>-<index:020>.snap
//! ```
//!
//! Entries and hard state share one record stream, so a single fsync makes a
//! whole batch durable (group commit). Only a torn tail of the last segment is
//! repaired on open; anything else wrong stops the node with an error naming
//! file and offset. Blocking I/O: the node calls this from a blocking thread.

pub mod codec;
mod dump;
mod error;
mod fsutil;
pub(crate) mod identity;
mod lock;
mod record;
mod recovery;
mod snapshot;
#[cfg(test)]
mod tests;
mod wal;

pub use codec::*;
pub use dump::dump;
pub use error::StorageError;
pub use lock::{Holder, LOCK_FILE, holder};
/// The largest WAL record payload: an entry (its command with its key and
/// value) beyond it cannot be stored.
pub use record::MAX_PAYLOAD as MAX_RECORD_BYTES;

use crate::raft::{Entry, HardState, Snapshot};
use error::{io_err, sync_err};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wal::Wal;

/// Bytes the data directory holds in WAL segments and in the snapshot
/// file, counted as they are written and deleted (never by listing the
/// disk), for the node's `raftkv_wal_bytes` and `raftkv_snapshot_bytes`
/// (docs/observability.md). WAL bytes include those still buffered.
#[derive(Debug, Default)]
pub struct DiskBytes {
    wal: AtomicU64,
    snapshot: AtomicU64,
}

impl DiskBytes {
    pub fn wal(&self) -> u64 {
        self.wal.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> u64 {
        self.snapshot.load(Ordering::Relaxed)
    }

    fn set_wal(&self, bytes: u64) {
        self.wal.store(bytes, Ordering::Relaxed);
    }

    /// The snapshot in force is now the file at `path`.
    fn set_snapshot_file(&self, path: &Path) {
        if let Ok(m) = std::fs::metadata(path) {
            self.snapshot.store(m.len(), Ordering::Relaxed);
        }
    }
}

/// The identity a data directory holds, `None` for a fresh one; reads
/// without taking the lock (for tools that plan before a node starts).
pub fn read_identity(dir: &Path) -> Result<Option<Identity>, StorageError> {
    identity::read(dir)
}

/// Which cluster and node this data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: u64,
    pub incarnation: u64,
}

pub use crate::raft::Persisted;

/// Everything read back from a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// `None` on a fresh data directory.
    pub identity: Option<Identity>,
    pub persisted: Persisted,
    /// Repairs made (or, for `inspect`, that open would make), for the log.
    pub warnings: Vec<String>,
}

/// Tunables; the defaults suit production, tests shrink the segment size.
#[derive(Clone, Debug)]
pub struct Options {
    /// A segment is sealed and a new one started once it reaches this size.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

pub struct Storage {
    dir: PathBuf,
    /// Held for the life of the `Storage`: no other process opens the directory.
    _lock: lock::DirLock,
    wal: Wal,
    /// Set after a failed write or fsync; see `StorageError::Poisoned`.
    poisoned: Option<String>,
    bytes: Arc<DiskBytes>,
}

impl Storage {
    /// Opens (creating if needed) the data directory with default options.
    pub fn open(dir: &Path) -> Result<(Storage, Recovered), StorageError> {
        Storage::open_with(dir, Options::default())
    }

    /// Opens the data directory; cuts a torn WAL tail, finishes or rolls back
    /// an interrupted `install_snapshot` (both reported in `warnings`) and
    /// removes leftover temp files. If an error is returned, nothing in the
    /// directory has been modified (but for the lock file). Refused with
    /// `StorageError::Locked` while another process has it open.
    pub fn open_with(dir: &Path, options: Options) -> Result<(Storage, Recovered), StorageError> {
        fsutil::ensure_dir(dir)?;
        let lock = lock::acquire(dir)?;
        let rec = recovery::recover(dir)?;
        let mut warnings = rec.warnings;
        let wal_dir = dir.join("wal");
        fsutil::ensure_dir(&wal_dir)?;
        fsutil::ensure_dir(&dir.join("snap"))?;
        warnings.extend(fsutil::remove_temps(dir)?);
        warnings.extend(fsutil::remove_temps(&dir.join("snap"))?);
        if let Some((path, offset)) = &rec.torn {
            cut(path, *offset)?;
        }
        if !rec.obsolete.is_empty() {
            for path in &rec.obsolete {
                std::fs::remove_file(path).map_err(io_err(path))?;
            }
            fsutil::sync_dir(&wal_dir)?;
        }
        if let Some(keep) = &rec.snapshot_path {
            if !rec.stale_snapshots.is_empty() {
                snapshot::remove_others(&dir.join("snap"), keep)?;
            }
        }
        let bytes = Arc::new(DiskBytes::default());
        if let Some(keep) = &rec.snapshot_path {
            bytes.set_snapshot_file(keep);
        }
        let wal = Wal::resume(&wal_dir, options.segment_bytes, rec.wal, bytes.clone())?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            _lock: lock,
            wal,
            poisoned: None,
            bytes,
        };
        let recovered = Recovered {
            identity: rec.identity,
            persisted: rec.persisted,
            warnings,
        };
        Ok((storage, recovered))
    }

    /// Reads the data directory without modifying anything (for `raftctl
    /// dump`); a torn tail is reported in `warnings`, not cut.
    pub fn inspect(dir: &Path) -> Result<Recovered, StorageError> {
        std::fs::read_dir(dir).map_err(io_err(dir))?;
        let rec = recovery::recover(dir)?;
        Ok(Recovered {
            identity: rec.identity,
            persisted: rec.persisted,
            warnings: rec.warnings,
        })
    }

    /// Durably records which cluster and node this directory belongs to.
    pub fn set_identity(&mut self, id: &Identity) -> Result<(), StorageError> {
        self.check()?;
        let r = identity::write(&self.dir, id);
        self.poison_on_io(r)
    }

    /// Buffers `entries`; they replace stored entries from
    /// `entries[0].index()` on. Durable only after `sync`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check()?;
        for e in entries {
            writable(e.id, "entry")?;
        }
        let r = self.wal.append(entries);
        self.poison_on_io(r)
    }

    /// Buffers the hard state; durable only after `sync`.
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.check()?;
        writable(
            crate::raft::LogId::new(hs.term.0, hs.commit.0),
            "hard state",
        )?;
        let r = self.wal.set_hard_state(hs);
        self.poison_on_io(r)
    }

    /// Makes everything buffered durable with one fdatasync (group commit).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check()?;
        let r = self.wal.sync();
        self.poison_on_io(r)
    }

    /// Durably saves `snap`, deletes older snapshots, then deletes the WAL
    /// segments it makes redundant. Entries after the snapshot are kept; if
    /// it covers the whole log, the log restarts right after it.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        self.check()?;
        writable(snap.meta.last, "snapshot")?;
        let index = snap.meta.last.index.0;
        if index == 0 || index < self.wal.floor() {
            return Err(StorageError::Invalid(format!(
                "snapshot at index {index} does not advance the saved one at {}",
                self.wal.floor()
            )));
        }
        let snap_dir = self.dir.join("snap");
        let r = snapshot::write(&snap_dir, snap)
            .inspect(|path| self.bytes.set_snapshot_file(path))
            .and_then(|path| snapshot::remove_others(&snap_dir, &path))
            .and_then(|()| self.wal.compact(index));
        self.poison_on_io(r)
    }

    /// Where this node's snapshot files live, for [`write_snapshot_file`]
    /// on a thread of its own (a large snapshot's write and fsync then do
    /// not hold up the WAL's group commits).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snap")
    }

    /// The second half of [`Storage::save_snapshot`] for a snapshot file
    /// already written by [`write_snapshot_file`] at `path`: deletes older
    /// snapshots, then the WAL segments it makes redundant. If a snapshot at
    /// or past `index` was installed meanwhile, the file is stale and
    /// `Ok(false)` is returned: one behind the installed snapshot is deleted
    /// (recovery would ignore it anyway, as it takes the newest snapshot);
    /// one at the same index has the installed one's name, and is kept.
    pub fn adopt_snapshot(&mut self, index: u64, path: &Path) -> Result<bool, StorageError> {
        self.check()?;
        let snap_dir = self.snapshot_dir();
        if index == self.wal.floor() {
            return Ok(false);
        }
        if index < self.wal.floor() {
            let r = std::fs::remove_file(path)
                .map_err(io_err(path))
                .and_then(|()| fsutil::sync_dir(&snap_dir));
            return self.poison_on_io(r).map(|()| false);
        }
        self.bytes.set_snapshot_file(path);
        let r = snapshot::remove_others(&snap_dir, path).and_then(|()| self.wal.compact(index));
        self.poison_on_io(r).map(|()| true)
    }

    /// Installs a snapshot received from the leader: durably saves `snap` and
    /// discards the whole stored log, including entries after `snap`'s index
    /// (they may conflict with it), as `raft::RaftLog::install` does. The
    /// hard state is kept; the next `append` must start at `snap`'s index + 1.
    /// `snap`'s index may be below, at or above the last stored entry, but
    /// not below the saved snapshot (nor 0). Buffered writes are synced first.
    ///
    /// Crash safety: a restart recovers either the state before the call or
    /// the state after it, never a mix. The steps:
    /// 1. sync; start a fresh segment named past every existing one (so it
    ///    replays last), holding the current hard state and a restart marker
    ///    naming `snap`; fsync it (its directory entry is fsynced on creation).
    /// 2. write the snapshot atomically (temp, fsync, rename, dir fsync). This
    ///    is the commit point.
    /// 3. delete older snapshots and every older segment; fsync the directories.
    ///
    /// Recovery judges the marker by the recovered snapshot. If its index is
    /// at least the marker's, the install committed: every entry replayed
    /// before the marker is void, whatever its index (so stale entries past
    /// the snapshot in older segments left by a crash during step 3 cannot
    /// come back), and open deletes those older segments. Otherwise the crash
    /// came before step 2 finished: the marker's segment (which can then only
    /// hold the hard state already synced before it, and the marker) is
    /// deleted by open, which restores the old state exactly; deleting it,
    /// rather than leaving the marker dormant, ensures a later snapshot at or
    /// past that index cannot wake it and void live entries. A crash inside
    /// step 1 leaves an empty or torn fresh segment, handled as after a roll.
    pub fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        self.check()?;
        writable(snap.meta.last, "snapshot")?;
        let index = snap.meta.last.index.0;
        if index == 0 || index < self.wal.floor() {
            return Err(StorageError::Invalid(format!(
                "installed snapshot at index {index} is behind the saved one at {}",
                self.wal.floor()
            )));
        }
        let snap_dir = self.dir.join("snap");
        let r = self
            .wal
            .begin_install(snap.meta.last)
            .and_then(|()| snapshot::write(&snap_dir, snap))
            .inspect(|path| self.bytes.set_snapshot_file(path))
            .and_then(|path| snapshot::remove_others(&snap_dir, &path))
            .and_then(|()| self.wal.finish_install(index));
        self.poison_on_io(r)
    }

    /// The bytes this directory holds, kept current as it is written (for
    /// the node's metrics).
    pub fn disk_bytes(&self) -> Arc<DiskBytes> {
        self.bytes.clone()
    }

    /// First indices of the WAL segments (diagnostics and tests).
    pub fn segments(&self) -> &[u64] {
        self.wal.segments()
    }

    fn check(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(why) => Err(StorageError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison_on_io<T>(&mut self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e @ (StorageError::Io { .. } | StorageError::Sync { .. })) = &r {
            self.poisoned = Some(e.to_string());
        }
        r
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("dir", &self.dir)
            .field("segments", &self.wal.segments())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Durably writes `snap` into the snapshot directory `dir` (see
/// [`Storage::snapshot_dir`]) and returns its path; it takes effect once
/// [`Storage::adopt_snapshot`] is called. Needs no `&mut Storage`, so it
/// runs beside WAL writes; a crash in between leaves a complete snapshot
/// file that recovery uses (its entries are still in the WAL too).
pub fn write_snapshot_file(dir: &Path, snap: &Snapshot) -> Result<PathBuf, StorageError> {
    writable(snap.meta.last, "snapshot")?;
    snapshot::write(dir, snap)
}

/// Refuses to write a term or index that recovery would refuse to read
/// back (see [`MAX_STORED`]).
fn writable(id: crate::raft::LogId, what: &str) -> Result<(), StorageError> {
    stored(id.term.0, &format!("{what} term"))
        .and_then(|_| stored(id.index.0, &format!("{what} index")))
        .map(|_| ())
        .map_err(|e| StorageError::Invalid(e.0))
}

/// Cuts a torn tail off the last segment, durably.
fn cut(path: &Path, offset: u64) -> Result<(), StorageError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(offset).map_err(io_err(path))?;
    f.sync_all().map_err(sync_err(path))
}
