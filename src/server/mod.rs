//! The node: drives the consensus core, storage and state machine with
//! tokio, and serves the peer and client gRPC services.

pub mod config;
