//! TLS on the client and peer ports (docs/security.md): certificate files
//! that reload when they change, a TLS listener for tonic that keeps the
//! peer's certificates for the services, a TLS dialer for tonic channels,
//! the member identity a peer certificate carries, and plain words for
//! what a failed handshake means.

mod accept;
mod connect;
mod explain;
pub mod generate;
pub mod identity;
mod load;

pub use accept::{Accepted, OnRefusal, PeerCerts, incoming};
pub use connect::{ClientTls, HandshakeFailed, channel, handshake_failure, lazy_channel};
pub use load::{ClientFiles, Load, Reload, Reloadable, ServerFiles, TlsError, TlsFiles};
