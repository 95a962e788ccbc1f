//! Constructors for the refusals the state machine returns.
//!
//! Refusals are data (`pb::KvError` inside a `WriteResponse`), not Rust errors:
//! every replica must produce the same refusal for the same entry, and a
//! client retrying through a session must get the same answer again.

use crate::pb::KvError;
use crate::pb::kv_error::Code;

/// A refusal with `code` and a human-readable `message`.
pub(crate) fn kv_error(code: Code, message: impl Into<String>) -> KvError {
    KvError {
        code: code as i32,
        message: message.into(),
    }
}

/// A malformed entry or snapshot: nothing was changed.
pub(crate) fn invalid(message: impl Into<String>) -> KvError {
    kv_error(Code::Invalid, message)
}

/// The client's session is gone (never registered, expired, evicted) or the
/// answer to this request was already discarded: the request was NOT applied
/// now, and the client must not assume it was or was not applied before.
pub(crate) fn session_expired(message: impl Into<String>) -> KvError {
    kv_error(Code::SessionExpired, message)
}
