//! The node: drives the consensus core, storage and state machine with
//! tokio, and serves the peer and client gRPC services.

pub mod auth;
pub mod backup;
mod boot_clock;
mod bootstrap;
pub mod config;
mod discovery;
mod driver;
mod gate;
pub mod grpc;
pub mod grpc_metrics;
pub mod node;
pub mod peer_check;
pub mod peer_service;
#[cfg(test)]
mod peer_tests;
pub mod security;
pub(crate) mod startup;
pub mod transport;
pub mod wire;

pub use bootstrap::derived_cluster_id;
pub use startup::run;
