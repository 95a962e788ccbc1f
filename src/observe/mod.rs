//! Observability: the Prometheus registry and the HTTP probes.

pub mod http;
mod lease_clock;
mod metrics;

pub use http::Health;
pub use metrics::Metrics;
