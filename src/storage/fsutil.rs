//! Small durable-filesystem helpers. A rename or a new file is only durable
//! once its directory is fsynced, which `std` does not do for us.

use super::error::{StorageError, io_err, sync_err};
use std::fs::{self, File};
use std::io::{self, Write};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::path::Path;

/// Suffix of files being written; they are ignored on recovery and removed on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(io_err(dir))?;
    d.sync_all().map_err(sync_err(dir))
}

/// Creates `dir` if missing and makes its directory entry durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// How much of a file being written may wait in the page cache before it is
/// pushed to disk (see [`write_atomic`]). A WAL fdatasync can queue behind
/// at most about two of these, not behind a whole 130 MB snapshot.
pub(crate) const SYNC_CHUNK: u64 = 1 << 20;

/// Writes `dir/name` so that after a crash it holds either the old content or
/// all of `parts`, never a mix: temp file, fsync, rename, fsync directory.
/// The temp file is pushed to disk chunk by chunk as it is written (see
/// [`ChunkedWriter`]), so the final fsync, and every other file's fsync
/// meanwhile, finds little dirty data left to wait for.
pub(crate) fn write_atomic(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<(), StorageError> {
    write_atomic_observed(dir, name, parts, SYNC_CHUNK, &mut |_| {})
}

/// [`write_atomic`] with the chunk size given, calling `pushed` with the
/// number of bytes written so far after each chunk is pushed: tests stop
/// there to see what a crash mid-write would leave.
pub(crate) fn write_atomic_observed(
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
    chunk: u64,
    pushed: &mut dyn FnMut(u64),
) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dest = dir.join(name);
    let f = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = ChunkedWriter::new(f, chunk, pushed);
    for part in parts {
        w.write(part).map_err(io_err(&tmp))?;
    }
    let f = w.finish();
    f.sync_all().map_err(sync_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    sync_dir(dir)
}

/// Writes a file sequentially and, after every `chunk` bytes, starts the
/// writeback of that chunk and waits for the previous one's: the way to
/// stream a large file to disk without letting the page cache fill with it
/// (which would make the final fsync, and any fsync of another file on the
/// same disk — the WAL's — wait behind all of it at once). On Linux this is
/// `sync_file_range`; written chunks are then dropped from the page cache
/// (a snapshot file is read back only on restart). Elsewhere each chunk is
/// fdatasynced. Neither makes anything durable: only the caller's final
/// fsync does (`sync_file_range` flushes no metadata and no disk cache).
pub(crate) struct ChunkedWriter<'a> {
    file: File,
    chunk: u64,
    /// Bytes written so far.
    written: u64,
    /// Bytes whose writeback was started (a multiple of `chunk`).
    started: u64,
    pushed: &'a mut dyn FnMut(u64),
}

impl<'a> ChunkedWriter<'a> {
    pub(crate) fn new(file: File, chunk: u64, pushed: &'a mut dyn FnMut(u64)) -> ChunkedWriter<'a> {
        assert!(chunk > 0, "a chunk holds at least one byte");
        ChunkedWriter {
            file,
            chunk,
            written: 0,
            started: 0,
            pushed,
        }
    }

    pub(crate) fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let room = self.started + self.chunk - self.written;
            let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.file.write_all(&buf[..n])?;
            self.written += n as u64;
            buf = &buf[n..];
            if self.written == self.started + self.chunk {
                self.push()?;
            }
        }
        Ok(())
    }

    /// Starts writing back the chunk just filled, then waits for the one
    /// before it: one chunk is in flight while the next is written.
    fn push(&mut self) -> io::Result<()> {
        let (off, len) = (self.started, self.chunk);
        start_writeback(&self.file, off, len)?;
        if let Some(prev) = off.checked_sub(len) {
            wait_written(&self.file, prev, len)?;
        }
        self.started += len;
        (self.pushed)(self.written);
        Ok(())
    }

    /// The file, with its last (partial) chunks left to the caller's fsync.
    pub(crate) fn finish(self) -> File {
        self.file
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(f: &File, off: u64, len: u64) -> io::Result<()> {
    sync_range(f, off, len, libc::SYNC_FILE_RANGE_WRITE)
}

#[cfg(target_os = "linux")]
fn wait_written(f: &File, off: u64, len: u64) -> io::Result<()> {
    let all = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    sync_range(f, off, len, all)?;
    // Only advice: the pages are clean now, and not read again before a
    // restart. Its failure costs page cache, nothing else.
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            off as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
    Ok(())
}

/// `sync_file_range(2)`; where the file system does not support it, an
/// fdatasync instead. A write error (EIO, ENOSPC) is returned: the node
/// must not rely on the final fsync to report it again.
#[cfg(target_os = "linux")]
fn sync_range(f: &File, off: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    let r = unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            flags,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::ESPIPE | libc::EOPNOTSUPP) => f.sync_data(),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn wait_written(f: &File, _: u64, _: u64) -> io::Result<()> {
    f.sync_data()
}

/// Removes leftover temp files (from a crash mid-write); returns what it removed.
pub(crate) fn remove_temps(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(removed);
    };
    for ent in rd {
        let ent = ent.map_err(io_err(dir))?;
        let path = ent.path();
        if ent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed.push(format!("removed leftover temp file {}", path.display()));
        }
    }
    Ok(removed)
}
