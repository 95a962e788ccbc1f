//! An exclusive lock on the data directory, so two processes never write one
//! log (two `raftkv` started on the same volume by mistake would interleave
//! WAL records and votes: a sure way to break Raft's safety).
//!
//! The lock is `flock(2)` on `<dir>/LOCK`, held for as long as the `Storage`
//! lives and released by the kernel when the process dies, even by SIGKILL,
//! so a crash never leaves a stale lock behind. The file holds the holder's
//! pid, only to name it in the refusal.

use super::error::{StorageError, io_err};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the lock until dropped (closing the file releases it).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// What a refusal says about the lock's holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The lock file.
    pub path: PathBuf,
    /// The pid the holder wrote, if it could be read.
    pub pid: Option<u32>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "process {pid}")?,
            None => f.write_str("another process")?,
        }
        write!(f, " holds {}", self.path.display())
    }
}

/// Takes the lock on `dir` (which exists) for this process, or says who
/// holds it. Never waits.
pub(crate) fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
    let path = dir.join(LOCK_FILE);
    // Not truncated before the lock is ours: the pid in it is the holder's.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    if !try_flock(&file, libc::LOCK_EX).map_err(io_err(&path))? {
        return Err(StorageError::Locked(Holder {
            pid: read_pid(&mut file),
            path,
        }));
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(io_err(&path))?;
    Ok(DirLock { _file: file })
}

/// Who holds the lock on `dir`, if anyone (for readers such as `raftctl
/// dump`, which take no lock). A directory without a lock file is free.
pub fn holder(dir: &Path) -> Result<Option<Holder>, StorageError> {
    let path = dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    // A shared lock is refused exactly while an exclusive one is held; it
    // is released again when `file` closes.
    if try_flock(&file, libc::LOCK_SH).map_err(io_err(&path))? {
        return Ok(None);
    }
    Ok(Some(Holder {
        pid: read_pid(&mut file),
        path,
    }))
}

/// `flock(op | LOCK_NB)`: Ok(false) if another open file holds a
/// conflicting lock.
fn try_flock(file: &File, op: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor this `File` owns and keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            ErrorKind::WouldBlock => return Ok(false),
            ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path()).unwrap(), None);
        let lock = acquire(dir.path()).unwrap();
        let me = Some(std::process::id());
        // flock locks belong to the open file: a second open conflicts even
        // within one process, as a second process would.
        match acquire(dir.path()) {
            Err(StorageError::Locked(h)) => assert_eq!(h.pid, me),
            other => panic!("second lock taken: {other:?}"),
        }
        assert_eq!(holder(dir.path()).unwrap().unwrap().pid, me);
        drop(lock);
        assert_eq!(holder(dir.path()).unwrap(), None);
        let _again = acquire(dir.path()).unwrap();
    }
}
