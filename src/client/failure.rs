//! Reading a failed RPC: was it a not-leader redirect, an unknown outcome,
//! an unreachable node, or a final answer? The kinds, and the leader a
//! redirect names, are read by `crate::status` from the status's details
//! (the node builds its statuses there too); this adds what the retry loop
//! needs.

use tonic::Status;

use super::route::normalize_addr;
use crate::status::{self, Kind};

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
    /// The learner to promote has not caught up yet: the caller decides
    /// whether to ask again.
    LearnerBehind { id: u64, detail: String },
    /// The request itself is wrong; retrying cannot help.
    InvalidArgument(String),
    /// The node failed, not the request: retried after a backoff, at
    /// another node first (a write keeps its session sequence number).
    Internal(String),
    /// This node's TLS handshake was refused (a certificate from another
    /// CA, without the dialed name, expired...): nothing was sent. Another
    /// node may still serve; if none does, this is the error the caller sees.
    TlsRefused(String),
    /// Any other final error.
    Fatal(String),
}

impl Failure {
    /// Human text of the failure, for the error a caller finally sees.
    pub(crate) fn detail(&self) -> &str {
        match self {
            Failure::NotLeader { detail, .. } | Failure::LearnerBehind { detail, .. } => detail,
            Failure::OutcomeUnknown(d)
            | Failure::Unreachable(d)
            | Failure::Busy(d)
            | Failure::InvalidArgument(d)
            | Failure::Internal(d)
            | Failure::TlsRefused(d)
            | Failure::Fatal(d) => d,
        }
    }
}

/// Classifies a gRPC status returned by a node's client port.
pub(crate) fn classify(status: &Status) -> Failure {
    if let Some(why) = crate::tls::handshake_failure(status) {
        return Failure::TlsRefused(why);
    }
    let message = status.message().to_string();
    match status::kind(status) {
        Kind::NotLeader => Failure::NotLeader {
            leader: leader_hint(status),
            detail: message,
        },
        Kind::OutcomeUnknown => Failure::OutcomeUnknown(message),
        Kind::Unreachable => Failure::Unreachable(describe(status)),
        Kind::Busy => Failure::Busy(message),
        Kind::LearnerBehind => Failure::LearnerBehind {
            id: status::learner(status).unwrap_or_default(),
            detail: message,
        },
        Kind::InvalidArgument => Failure::InvalidArgument(message),
        Kind::Internal => Failure::Internal(message),
        Kind::Fatal => Failure::Fatal(format!("{}: {}", status.code().description(), message)),
    }
}

/// The leader's client address named by a not-leader reply.
pub(crate) fn leader_hint(status: &Status) -> Option<String> {
    let (_, addr) = status::leader(status)?;
    normalize_addr(&addr)
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

    #[test]
    fn a_redirect_names_the_leader_from_the_details() {
        let s = status::not_leader(Some((2, "127.0.0.1:7399")));
        assert_eq!(leader_hint(&s).as_deref(), Some("127.0.0.1:7399"));
        assert!(matches!(
            classify(&s),
            Failure::NotLeader { leader: Some(a), .. } if a == "127.0.0.1:7399"
        ));
        let s = status::not_leader(Some((1, "http://h:1")));
        assert_eq!(leader_hint(&s).as_deref(), Some("h:1"));
    }

    #[test]
    fn a_message_that_names_a_leader_is_not_a_redirect() {
        // Text is for people: without the details there is no hint, and a
        // bare UNAVAILABLE is an unreachable node.
        let s = Status::unavailable("not leader; leader is node 2 at 10.0.0.2:7379");
        assert_eq!(leader_hint(&s), None);
        assert!(matches!(classify(&s), Failure::Unreachable(_)));
    }

    #[test]
    fn no_leader_known_has_no_hint() {
        let s = status::not_leader(None);
        assert_eq!(
            classify(&s),
            Failure::NotLeader {
                leader: None,
                detail: "not leader; no leader known".into()
            }
        );
        assert_eq!(leader_hint(&status::not_leader(Some((1, "  ")))), None);
    }

    #[test]
    fn unavailable_kinds_are_told_apart() {
        assert!(matches!(
            classify(&status::outcome_unknown("leadership lost")),
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
            classify(&status::invalid_argument("key too large")),
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
    fn an_internal_failure_is_not_final() {
        assert_eq!(
            classify(&status::internal("wrong read answer")),
            Failure::Internal("internal: wrong read answer".into())
        );
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
