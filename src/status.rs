//! The one error vocabulary of the client port, shared by the node (which
//! builds these statuses) and the client (which reads them), so the two can
//! never disagree about what a failure means.
//!
//! Every failure of a client-port RPC is one of a few [`Kind`]s, and the
//! kind decides what a caller does: follow a redirect, retry the same write
//! with the same session sequence number, back off and retry, or give up.
//! The node states the kind in the status's details, as a gRPC richer-error
//! `google.rpc.ErrorInfo` (domain [`DOMAIN`], reason [`Kind::reason`]) that
//! also carries the leader's id and address on a not-leader answer. The
//! message is for people only; nothing reads it. A status without that
//! detail (the transport's own, or a proxy's) is judged by its code alone.
//! Conventions: docs/internals.md.

use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every status a raftkv node builds.
pub const DOMAIN: &str = "raftkv";
/// `ErrorInfo.metadata` key: the leader's node id, on a not-leader answer.
pub const LEADER_ID_KEY: &str = "leader_id";
/// `ErrorInfo.metadata` key: the leader's client address, on a not-leader
/// answer.
pub const LEADER_ADDR_KEY: &str = "leader_addr";
/// `ErrorInfo.metadata` key: the learner a refused promotion names.
pub const LEARNER_ID_KEY: &str = "learner_id";

/// The largest client-port message, either way (tonic's encode and decode
/// limits on the node's Kv service and in the client): a CAS carries a key
/// and two values, an answer at most one value, plus framing. Set from the
/// limits rather than left at tonic's 4 MiB default, so a raised value
/// limit is not refused by gRPC before the state machine can judge it.
pub fn client_message_limit(max_key_bytes: usize, max_value_bytes: usize) -> usize {
    max_key_bytes + 2 * max_value_bytes + (64 << 10)
}

/// What a failed RPC means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// This node is not the leader; nothing was executed. Retry at the
    /// leader the status names (if any).
    NotLeader,
    /// A write was proposed but leadership was lost before it committed: it
    /// may or may not apply. Retry with the same session sequence number.
    OutcomeUnknown,
    /// The leader cannot take the request now (a leadership transfer or a
    /// membership change under way); nothing was executed. Retry after a
    /// backoff: the condition passes by itself.
    Busy,
    /// The node did not answer, is stopping, or the transport failed; the
    /// request may have reached it. Retry, elsewhere first.
    Unreachable,
    /// The learner to promote has not caught up with the log. The client
    /// does not retry it: how long to wait for a learner is its caller's
    /// choice (raftctl waits minutes, a snapshot can be large).
    LearnerBehind,
    /// The request is malformed or over a limit; retrying cannot help.
    InvalidArgument,
    /// The node failed in a way that is not the request's fault. Retrying
    /// is safe (a write carries its session sequence number, a read changes
    /// nothing) and may reach a healthy node.
    Internal,
    /// Any other final error.
    Fatal,
}

impl Kind {
    /// Whether retrying (at the same or another node) may succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            Kind::InvalidArgument | Kind::Fatal | Kind::LearnerBehind
        )
    }

    /// The `ErrorInfo.reason` that names this kind on the wire.
    pub fn reason(self) -> &'static str {
        match self {
            Kind::NotLeader => "NOT_LEADER",
            Kind::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Kind::Busy => "BUSY",
            Kind::Unreachable => "STOPPING",
            Kind::LearnerBehind => "LEARNER_BEHIND",
            Kind::InvalidArgument => "INVALID_ARGUMENT",
            Kind::Internal => "INTERNAL",
            Kind::Fatal => "FATAL",
        }
    }

    /// Every kind, for reading a reason back.
    const ALL: [Kind; 8] = [
        Kind::NotLeader,
        Kind::OutcomeUnknown,
        Kind::Busy,
        Kind::Unreachable,
        Kind::LearnerBehind,
        Kind::InvalidArgument,
        Kind::Internal,
        Kind::Fatal,
    ];

    fn from_reason(reason: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.reason() == reason)
    }

    /// The gRPC code a node answers this kind with: the retryable kinds are
    /// `UNAVAILABLE`, so that generic gRPC clients retry them too.
    fn code(self) -> Code {
        match self {
            Kind::NotLeader | Kind::OutcomeUnknown | Kind::Busy | Kind::Unreachable => {
                Code::Unavailable
            }
            Kind::InvalidArgument => Code::InvalidArgument,
            Kind::Internal => Code::Internal,
            Kind::LearnerBehind | Kind::Fatal => Code::FailedPrecondition,
        }
    }
}

/// A status of `kind` with `message` for people and `metadata` for the
/// client, in the details.
fn build(kind: Kind, message: String, metadata: HashMap<String, String>) -> Status {
    let details = ErrorDetails::with_error_info(kind.reason(), DOMAIN, metadata);
    Status::with_error_details(kind.code(), message, details)
}

/// Not the leader; names the leader `(id, client address)` when known.
pub fn not_leader(leader: Option<(u64, &str)>) -> Status {
    let Some((id, addr)) = leader else {
        return build(
            Kind::NotLeader,
            "not leader; no leader known".into(),
            HashMap::new(),
        );
    };
    let metadata = HashMap::from([
        (LEADER_ID_KEY.to_string(), id.to_string()),
        (LEADER_ADDR_KEY.to_string(), addr.to_string()),
    ]);
    build(
        Kind::NotLeader,
        format!("not leader; leader is node {id} at {addr}"),
        metadata,
    )
}

/// The write may or may not apply (leadership lost after proposing).
pub fn outcome_unknown(why: &str) -> Status {
    build(
        Kind::OutcomeUnknown,
        format!("outcome unknown: {why}"),
        HashMap::new(),
    )
}

/// Nothing executed; the leader will take the request once `why` passes.
pub fn busy(why: &str) -> Status {
    build(Kind::Busy, format!("busy: {why}"), HashMap::new())
}

/// The node is shutting down: retry at another.
pub fn stopping() -> Status {
    build(Kind::Unreachable, "node is stopping".into(), HashMap::new())
}

/// The request can never succeed as sent.
pub fn invalid_argument(why: &str) -> Status {
    build(Kind::InvalidArgument, why.to_string(), HashMap::new())
}

/// A promotion refused until learner `id` catches up with the log.
pub fn learner_behind(id: u64) -> Status {
    let metadata = HashMap::from([(LEARNER_ID_KEY.to_string(), id.to_string())]);
    build(
        Kind::LearnerBehind,
        format!("learner {id} has not caught up with the log yet"),
        metadata,
    )
}

/// The node failed, not the request.
pub fn internal(why: &str) -> Status {
    build(Kind::Internal, format!("internal: {why}"), HashMap::new())
}

/// The raftkv `ErrorInfo` of a status, if a node put one there.
fn error_info(status: &Status) -> Option<tonic_types::ErrorInfo> {
    status
        .get_details_error_info()
        .filter(|info| info.domain == DOMAIN)
}

/// The kind of a status returned by a client port (or by the transport
/// on the way to it).
pub fn kind(status: &Status) -> Kind {
    if let Some(kind) = error_info(status).and_then(|info| Kind::from_reason(&info.reason)) {
        return kind;
    }
    // Not from a node's own vocabulary: only the code speaks.
    match status.code() {
        // Read as busy: nothing was done; back off and retry.
        Code::ResourceExhausted | Code::Aborted => Kind::Busy,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Kind::Unreachable
        }
        Code::InvalidArgument | Code::OutOfRange => Kind::InvalidArgument,
        Code::Internal => Kind::Internal,
        _ => Kind::Fatal,
    }
}

/// The learner a [`learner_behind`] status names.
pub fn learner(status: &Status) -> Option<u64> {
    error_info(status)?
        .metadata
        .get(LEARNER_ID_KEY)?
        .parse()
        .ok()
}

/// The leader `(id, client address)` a not-leader status names, if any.
pub fn leader(status: &Status) -> Option<(u64, String)> {
    let info = error_info(status)?;
    let id = info.metadata.get(LEADER_ID_KEY)?.parse().ok()?;
    let addr = info.metadata.get(LEADER_ADDR_KEY)?.trim();
    (!addr.is_empty()).then(|| (id, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_is_read_back_as_its_kind() {
        assert_eq!(kind(&not_leader(None)), Kind::NotLeader);
        assert_eq!(kind(&not_leader(Some((2, "h:7399")))), Kind::NotLeader);
        assert_eq!(
            kind(&outcome_unknown("leadership lost")),
            Kind::OutcomeUnknown
        );
        assert_eq!(kind(&busy("leadership transfer under way")), Kind::Busy);
        assert_eq!(kind(&stopping()), Kind::Unreachable);
        assert_eq!(kind(&invalid_argument("empty key")), Kind::InvalidArgument);
        assert_eq!(kind(&internal("wrong read answer")), Kind::Internal);
    }

    #[test]
    fn the_kind_is_read_from_the_details_never_from_the_message() {
        // A message that reads like another kind changes nothing.
        assert_eq!(kind(&busy("not leader")), Kind::Busy);
        assert_eq!(
            kind(&invalid_argument("outcome unknown")),
            Kind::InvalidArgument
        );
        // Without the detail, the words mean nothing either.
        assert_eq!(
            kind(&Status::unavailable("not leader; leader is node 2 at h:1")),
            Kind::Unreachable
        );
        assert_eq!(
            leader(&Status::unavailable("leader is node 2 at h:1")),
            None
        );
    }

    #[test]
    fn another_domain_is_not_ours() {
        let details = ErrorDetails::with_error_info("BUSY", "example.com", HashMap::new());
        let s = Status::with_error_details(Code::Unavailable, "x", details);
        assert_eq!(kind(&s), Kind::Unreachable);
    }

    #[test]
    fn busy_is_retryable_and_final_kinds_are_not() {
        // A write that meets a leadership transfer must be retried, not failed.
        assert!(kind(&busy("leadership transfer under way")).is_retryable());
        assert!(Kind::OutcomeUnknown.is_retryable());
        assert!(Kind::NotLeader.is_retryable());
        assert!(Kind::Internal.is_retryable());
        assert!(!kind(&invalid_argument("x")).is_retryable());
        assert!(!kind(&learner_behind(3)).is_retryable());
        assert!(!kind(&Status::failed_precondition("x")).is_retryable());
        assert!(!kind(&Status::permission_denied("x")).is_retryable());
    }

    #[test]
    fn not_leader_carries_the_leader_in_the_details() {
        let s = not_leader(Some((2, "10.0.0.2:7379")));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "not leader; leader is node 2 at 10.0.0.2:7379");
        assert_eq!(leader(&s), Some((2, "10.0.0.2:7379".to_string())));
        assert_eq!(not_leader(None).message(), "not leader; no leader known");
        assert_eq!(leader(&not_leader(None)), None);
    }

    #[test]
    fn every_kind_survives_the_wire_codes() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_reason(k.reason()), Some(k));
            assert_eq!(kind(&build(k, "m".into(), HashMap::new())), k);
        }
    }

    #[test]
    fn plain_transport_failures_are_unreachable() {
        assert_eq!(
            kind(&Status::unavailable("tcp connect error")),
            Kind::Unreachable
        );
        assert_eq!(kind(&Status::deadline_exceeded("slow")), Kind::Unreachable);
        assert_eq!(kind(&Status::resource_exhausted("x")), Kind::Busy);
        assert_eq!(kind(&Status::internal("x")), Kind::Internal);
    }
}
