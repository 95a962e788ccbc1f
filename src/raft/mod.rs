//! The consensus core: a pure Raft state machine with a leader lease.
//! No I/O, no clock, no threads: see docs/consensus.md.

mod types;

pub use types::*;
