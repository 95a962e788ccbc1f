//! The one error type of the data directory. Every variant that concerns a
//! file names it (and, for corruption, the byte offset), so an operator who
//! sees a node refuse to start knows exactly what to look at.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused a read, write, fsync, rename, ...
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
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

pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}
