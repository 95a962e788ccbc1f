//! Observability: the Prometheus registry and the HTTP probes.

mod cpu;
pub mod http;
mod lease_clock;
mod metrics;
mod round_trip;

pub use http::Health;
pub use metrics::Metrics;
pub use round_trip::RoundTrips;
