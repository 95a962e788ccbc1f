//! The one error vocabulary of the client port, shared by the node (which
//! builds these statuses) and the client (which reads them), so the two can
//! never disagree about what a failure means.
//!
//! Every failure of a client-port RPC is one of a few [`Kind`]s, and the
//! kind decides what a caller does: follow a redirect, retry the same write
//! with the same session sequence number, back off and retry, or give up.
//! Conventions (docs/internals.md): a retryable condition is gRPC
//! `UNAVAILABLE`, told apart by the message's first words (`not leader`,
//! `outcome unknown`, `busy`); a request that can never succeed is
//! `INVALID_ARGUMENT`; `FAILED_PRECONDITION` and the rest are final.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key carrying the leader's client address on a not-leader reply.
pub const LEADER_ADDR_HEADER: &str = "x-raftkv-leader-addr";
/// Metadata key carrying the leader's node id on a not-leader reply.
pub const LEADER_ID_HEADER: &str = "x-raftkv-leader-id";

const NOT_LEADER: &str = "not leader";
const OUTCOME_UNKNOWN: &str = "outcome unknown";
const BUSY: &str = "busy";

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
    /// The request is malformed or over a limit; retrying cannot help.
    InvalidArgument,
    /// Any other final error.
    Fatal,
}

impl Kind {
    /// Whether retrying (at the same or another node) may succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Kind::InvalidArgument | Kind::Fatal)
    }
}

/// Not the leader; names the leader `(id, client address)` when known, in
/// the message and in the metadata headers.
pub fn not_leader(leader: Option<(u64, &str)>) -> Status {
    let Some((id, addr)) = leader else {
        return Status::unavailable(format!("{NOT_LEADER}; no leader known"));
    };
    let mut s = Status::unavailable(format!("{NOT_LEADER}; leader is node {id} at {addr}"));
    let md = s.metadata_mut();
    md.insert(LEADER_ID_HEADER, MetadataValue::from(id));
    if let Ok(v) = addr.parse() {
        md.insert(LEADER_ADDR_HEADER, v);
    }
    s
}

/// The write may or may not apply (leadership lost after proposing).
pub fn outcome_unknown(why: &str) -> Status {
    Status::unavailable(format!("{OUTCOME_UNKNOWN}: {why}"))
}

/// Nothing executed; the leader will take the request once `why` passes.
pub fn busy(why: &str) -> Status {
    Status::unavailable(format!("{BUSY}: {why}"))
}

/// The node is shutting down: retry at another.
pub fn stopping() -> Status {
    Status::unavailable("node is stopping")
}

/// The request can never succeed as sent.
pub fn invalid_argument(why: &str) -> Status {
    Status::invalid_argument(why)
}

/// The kind of a status returned by a client port (or by the transport
/// on the way to it).
pub fn kind(status: &Status) -> Kind {
    let message = status.message();
    match status.code() {
        Code::Unavailable if message.starts_with(NOT_LEADER) => Kind::NotLeader,
        Code::Unavailable if message.starts_with(OUTCOME_UNKNOWN) => Kind::OutcomeUnknown,
        Code::Unavailable if message.starts_with(BUSY) => Kind::Busy,
        // Read as busy: nothing was done; back off and retry.
        Code::ResourceExhausted | Code::Aborted => Kind::Busy,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Kind::Unreachable
        }
        Code::InvalidArgument | Code::OutOfRange => Kind::InvalidArgument,
        _ => Kind::Fatal,
    }
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
    }

    #[test]
    fn busy_is_retryable_and_final_kinds_are_not() {
        // A write that meets a leadership transfer must be retried, not failed.
        assert!(kind(&busy("leadership transfer under way")).is_retryable());
        assert!(Kind::OutcomeUnknown.is_retryable());
        assert!(Kind::NotLeader.is_retryable());
        assert!(!kind(&invalid_argument("x")).is_retryable());
        assert!(!kind(&Status::failed_precondition("x")).is_retryable());
        assert!(!kind(&Status::permission_denied("x")).is_retryable());
    }

    #[test]
    fn not_leader_carries_the_hint_in_headers_and_message() {
        let s = not_leader(Some((2, "10.0.0.2:7379")));
        assert_eq!(s.message(), "not leader; leader is node 2 at 10.0.0.2:7379");
        assert_eq!(s.metadata().get(LEADER_ID_HEADER).unwrap(), "2");
        assert_eq!(
            s.metadata().get(LEADER_ADDR_HEADER).unwrap(),
            "10.0.0.2:7379"
        );
        assert_eq!(not_leader(None).message(), "not leader; no leader known");
    }

    #[test]
    fn plain_transport_failures_are_unreachable() {
        assert_eq!(
            kind(&Status::unavailable("tcp connect error")),
            Kind::Unreachable
        );
        assert_eq!(kind(&Status::deadline_exceeded("slow")), Kind::Unreachable);
        assert_eq!(kind(&Status::resource_exhausted("x")), Kind::Busy);
    }
}
