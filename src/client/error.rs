//! The client's error type: what went wrong, in the terms a caller acts on.

use std::time::Duration;

use crate::pb;
use crate::pb::kv_error::Code;

/// Why an operation failed.
///
/// The variants are the decisions a caller makes: retry later or elsewhere
/// (`Unreachable`, `NoLeader`, `Timeout`), fix the input (`InvalidArgument`,
/// some `Rejected`), check what happened (`OutcomeUnknown`, `Timeout` of a
/// write), or report (`Rejected`, `Other`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No endpoint answered at all before the deadline.
    #[error("unreachable: no endpoint answered ({endpoints}): {last}")]
    Unreachable { endpoints: String, last: String },
    /// Nodes answered, but none was (or knew) a leader before the deadline.
    #[error("no leader: {0}")]
    NoLeader(String),
    /// The deadline passed while a leader existed but did not answer in time;
    /// a write that timed out may or may not have been applied.
    #[error("timed out after {after:?}: {last}")]
    Timeout { after: Duration, last: String },
    /// A write may or may not have been applied, and the cluster can no
    /// longer tell: a retry after an unknown outcome found the session (or
    /// the answer kept for it) gone. Read before writing again.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The command was applied and refused by the state machine (the same on
    /// every replica), e.g. INCR on a value that is not an integer.
    #[error("{}", rejection_text(.0))]
    Rejected(pb::KvError),
    /// A promotion of learner `id`, refused until it catches up with the
    /// log; asking again later may succeed.
    #[error("{detail}")]
    LearnerBehind { id: u64, detail: String },
    /// The request was refused before it was proposed (locally or by the server).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Anything else: an unexpected gRPC status or malformed answer.
    #[error("{0}")]
    Other(String),
}

fn rejection_text(e: &pb::KvError) -> String {
    if e.message.is_empty() {
        format!("rejected: {}", e.code().as_str_name())
    } else {
        format!("rejected: {}", e.message)
    }
}

impl ClientError {
    /// The state machine's refusal code, if this is a rejection.
    pub fn rejection_code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected(e) => Some(e.code()),
            _ => None,
        }
    }

    /// Whether the caller's input is at fault (empty or oversized key or
    /// value, malformed request), as opposed to the cluster or the data.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ClientError::InvalidArgument(_) => true,
            ClientError::Rejected(e) => matches!(
                e.code(),
                Code::KeyTooLarge | Code::ValueTooLarge | Code::EmptyKey | Code::Invalid
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(code: Code, message: &str) -> ClientError {
        ClientError::Rejected(pb::KvError {
            code: code as i32,
            message: message.into(),
        })
    }

    #[test]
    fn rejection_keeps_code_and_message() {
        let e = rejected(Code::NotAnInteger, "value is not an integer");
        assert_eq!(e.rejection_code(), Some(Code::NotAnInteger));
        assert_eq!(e.to_string(), "rejected: value is not an integer");
        assert!(!e.is_bad_input());
        assert_eq!(
            rejected(Code::Overflow, "").to_string(),
            "rejected: OVERFLOW"
        );
    }

    #[test]
    fn bad_input_covers_limits_and_local_validation() {
        assert!(rejected(Code::KeyTooLarge, "x").is_bad_input());
        assert!(rejected(Code::ValueTooLarge, "x").is_bad_input());
        assert!(rejected(Code::EmptyKey, "x").is_bad_input());
        assert!(ClientError::InvalidArgument("x".into()).is_bad_input());
        assert!(!ClientError::NoLeader("x".into()).is_bad_input());
        assert_eq!(ClientError::Other("x".into()).rejection_code(), None);
    }
}
