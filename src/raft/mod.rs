//! The consensus core: a pure Raft state machine with a leader lease.
//! No I/O, no clock, no threads: see docs/consensus.md.
//!
//! Inputs: [`Raft::step`], [`Raft::tick`], [`Raft::propose`], [`Raft::read`];
//! every effect leaves through [`Raft::ready`].

mod config;
mod core;
mod log;
mod message;
mod progress;
#[cfg(test)]
mod tests;
mod types;
mod validate;

pub use config::{Broken, Config};
pub use core::{Persisted, Raft, bootstrap};
pub use message::*;
pub use types::*;
