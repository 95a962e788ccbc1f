//! The one error type of the data directory. Every variant that concerns a
//! file names it (and, for corruption, the byte offset), so an operator who
//! sees a node refuse to start knows exactly what to look at.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused a read, write, fsync, rename, ...
    #[error("I/O error on {}: {source}{}", .path.display(), hint(.source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An fsync or fdatasync failed. The kernel may have dropped the dirty
    /// pages it could not write, so retrying could report success for data
    /// that never reached the disk: the node stops instead and recovers from
    /// its files on restart (docs/node.md, "When the disk fails").
    #[error(
        "fsync of {} failed: {source}{}; what reached the disk is unknown, so the node stops \
         rather than retry (a restart recovers from the files)",
        .path.display(),
        hint(.source)
    )]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bytes on disk that are not what this module wrote. Never repaired
    /// silently: only a torn tail of the last segment is cut off.
    #[error("corrupt data in {} at byte offset {offset}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The caller asked for something that would make the stored log invalid
    /// (for example a gap in indices); nothing was written.
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// An earlier write or fsync failed. After a failed fsync the kernel may
    /// have dropped dirty pages, so what is on disk is unknown: the node must
    /// restart and recover from the files instead of carrying on.
    #[error("storage unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// Another process has the data directory open (see `lock`).
    #[error("in use: {0}; two nodes must never share a data directory")]
    Locked(super::lock::Holder),
}

/// Wraps an `io::Error` with the path it happened on.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Wraps a failed fsync of `path`.
pub(crate) fn sync_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Sync {
        path: path.to_path_buf(),
        source,
    }
}

/// What an operator should look at for the errors that have one cause.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => " (the volume is full: free space or grow it)",
        Some(libc::EROFS) => {
            " (the file system is read-only: the kernel may have remounted it after errors)"
        }
        Some(libc::EIO) => " (the device reported an error: check the kernel log)",
        _ => "",
    }
}

pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}
