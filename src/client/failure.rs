//! Reading a failed RPC: was it a not-leader redirect, an unknown outcome,
//! an unreachable node, or a final answer? The kinds are the shared
//! vocabulary of `crate::status` (the node builds its statuses there too);
//! this adds the details the retry loop needs.

use tonic::Status;

use super::route::normalize_addr;
use crate::status::{self, Kind};

pub use crate::status::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};

/// What one failed attempt means for the retry loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The node is not the leader (nothing was executed); it may name one.
    NotLeader {
        leader: Option<String>,
        detail: String,
    },
    /// Leadership was lost after proposing: the write may or may not apply,
    /// so it is retried with the same session sequence number.
    OutcomeUnknown(String),
    /// This node did not answer (connect failure, reset, attempt timeout).
    Unreachable(String),
    /// The node is alive but overloaded; retry after a backoff.
    Busy(String),
    /// The request itself is wrong; retrying cannot help.
    InvalidArgument(String),
    /// Any other final error.
    Fatal(String),
}

impl Failure {
    /// Human text of the failure, for the error a caller finally sees.
    pub(crate) fn detail(&self) -> &str {
        match self {
            Failure::NotLeader { detail, .. } => detail,
            Failure::OutcomeUnknown(d)
            | Failure::Unreachable(d)
            | Failure::Busy(d)
            | Failure::InvalidArgument(d)
            | Failure::Fatal(d) => d,
        }
    }
}

/// Classifies a gRPC status returned by a node's client port.
pub(crate) fn classify(status: &Status) -> Failure {
    let message = status.message().to_string();
    match status::kind(status) {
        Kind::NotLeader => Failure::NotLeader {
            leader: leader_hint(status),
            detail: message,
        },
        Kind::OutcomeUnknown => Failure::OutcomeUnknown(message),
        Kind::Unreachable => Failure::Unreachable(describe(status)),
        Kind::Busy => Failure::Busy(message),
        Kind::InvalidArgument => Failure::InvalidArgument(message),
        Kind::Fatal => Failure::Fatal(format!("{}: {}", status.code().description(), message)),
    }
}

/// The leader's client address named by a not-leader reply: the metadata
/// header first, else the message `not leader; leader is node N at ADDR`.
pub(crate) fn leader_hint(status: &Status) -> Option<String> {
    if let Some(addr) = status
        .metadata()
        .get(LEADER_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(normalize_addr)
    {
        return Some(addr);
    }
    let rest = status.message().split_once("leader is node ")?.1;
    let addr = rest.split_once(" at ")?.1;
    normalize_addr(addr.split_whitespace().next()?)
}

/// A transport status with its root cause (tonic keeps it in the source
/// chain; the links between repeat each other).
fn describe(status: &Status) -> String {
    let message = status.message();
    let mut root = None;
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        root = Some(cause.to_string());
        source = cause.source();
    }
    match root {
        Some(root) if root.contains(message) => root,
        Some(root) if !message.contains(&root) => format!("{message}: {root}"),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn not_leader(message: &str, header: Option<&str>) -> Status {
        let mut status = Status::unavailable(message);
        if let Some(h) = header {
            status
                .metadata_mut()
                .insert(LEADER_ADDR_HEADER, MetadataValue::try_from(h).unwrap());
        }
        status
    }

    #[test]
    fn redirect_prefers_the_header() {
        let s = not_leader(
            "not leader; leader is node 2 at 10.0.0.2:7379",
            Some("127.0.0.1:7399"),
        );
        assert_eq!(leader_hint(&s).as_deref(), Some("127.0.0.1:7399"));
        assert!(matches!(
            classify(&s),
            Failure::NotLeader { leader: Some(a), .. } if a == "127.0.0.1:7399"
        ));
    }

    #[test]
    fn redirect_falls_back_to_the_message() {
        let s = not_leader("not leader; leader is node 2 at 10.0.0.2:7379", None);
        assert_eq!(leader_hint(&s).as_deref(), Some("10.0.0.2:7379"));
        let s = not_leader("not leader; leader is node 1 at http://h:1", None);
        assert_eq!(leader_hint(&s).as_deref(), Some("h:1"));
    }

    #[test]
    fn no_leader_known_has_no_hint() {
        let s = not_leader("not leader; no leader known", None);
        assert_eq!(
            classify(&s),
            Failure::NotLeader {
                leader: None,
                detail: "not leader; no leader known".into()
            }
        );
        let s = not_leader("not leader; no leader known", Some("  "));
        assert_eq!(leader_hint(&s), None);
    }

    #[test]
    fn unavailable_kinds_are_told_apart() {
        assert!(matches!(
            classify(&Status::unavailable("outcome unknown: leadership lost")),
            Failure::OutcomeUnknown(_)
        ));
        assert!(matches!(
            classify(&Status::unavailable("tcp connect error")),
            Failure::Unreachable(_)
        ));
        assert!(matches!(
            classify(&Status::deadline_exceeded("slow")),
            Failure::Unreachable(_)
        ));
    }

    #[test]
    fn final_codes_are_not_retried() {
        assert_eq!(
            classify(&Status::invalid_argument("key too large")),
            Failure::InvalidArgument("key too large".into())
        );
        assert!(matches!(
            classify(&Status::failed_precondition("not a member")),
            Failure::Fatal(m) if m.ends_with("not a member")
        ));
        assert!(matches!(
            classify(&Status::resource_exhausted("busy")),
            Failure::Busy(_)
        ));
    }

    #[test]
    fn a_leader_busy_with_a_transfer_is_retried() {
        let s = status::busy("leadership transfer under way");
        assert_eq!(
            classify(&s),
            Failure::Busy("busy: leadership transfer under way".into())
        );
    }
}
