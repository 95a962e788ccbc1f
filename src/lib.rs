//! raftkv: a Raft-replicated key-value store with a leader lease.
//!
//! Module map (docs/design.md, "Modules"): `raft` is the pure consensus core,
//! `storage` the write-ahead log on disk, `kv` the replicated state machine,
//! `replica` the node's decisions between them without I/O (shared with the
//! simulator), `server` the node that drives them with tokio, `observe` metrics and probes,
//! `client` the Rust client, `ctl` the raftctl subcommands, `check` the
//! history checkers (linearizability) shared by tests and `raftctl chaos`.

pub mod pb {
    //! Generated protobuf and gRPC code (proto/raftkv.proto).
    tonic::include_proto!("raftkv.v1");
}
pub mod check;
pub mod client;
pub mod ctl;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod kv;
pub mod observe;
pub mod raft;
pub mod replica;
pub mod server;
pub mod status;
pub mod storage;
pub mod tls;
