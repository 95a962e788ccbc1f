//! The node's data directory on its PersistentVolume (see DESIGN.md §3).

pub mod codec;
mod error;

pub use codec::*;
pub use error::StorageError;
