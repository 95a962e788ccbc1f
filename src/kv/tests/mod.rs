//! Tests of the state machine through its public interface.

mod auth;
mod changes;
mod commands;
mod expiry;
mod limits;
mod members;
mod property;
mod range;
mod sessions;
mod snapshot;

use super::{Limits, StateMachine};
use crate::pb::command::Op;
use crate::pb::kv_error::Code;
use crate::pb::write_response::Result as Outcome;
use crate::pb::{
    CasCmd, Command, DelCmd, ExpireCmd, IncrCmd, Proposal, RegisterSession, Session, SetCmd,
    WriteResponse,
};
use bytes::Bytes;
use prost::Message;

/// A state machine fed with consecutive log indexes.
pub(super) struct Harness {
    pub sm: StateMachine,
    pub next_index: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Harness {
        Harness {
            sm: StateMachine::new(limits),
            next_index: 1,
        }
    }

    /// Applies `op` without a session, stamped `stamp_ms`.
    pub fn apply(&mut self, stamp_ms: u64, op: Op) -> WriteResponse {
        self.apply_raw(&encode(None, stamp_ms, op))
    }

    /// Applies `op` as request `seq` of `client`.
    pub fn apply_as(
        &mut self,
        client: u64,
        seq: u64,
        first_incomplete: u64,
        stamp_ms: u64,
        op: Op,
    ) -> WriteResponse {
        let session = Session {
            client_id: client,
            seq,
            first_incomplete,
        };
        self.apply_raw(&encode(Some(session), stamp_ms, op))
    }

    pub fn apply_raw(&mut self, bytes: &[u8]) -> WriteResponse {
        let index = self.next_index;
        self.next_index += 1;
        let response = self.sm.apply(index, bytes);
        assert!(response.index <= index);
        if let Err(broken) = self.sm.check_invariants() {
            panic!("after entry {index}: {broken}");
        }
        response
    }

    /// Registers a session and returns its client id.
    /// TTL of `key` once cluster time has reached `now_ms`.
    pub fn ttl(&mut self, key: &str, now_ms: u64) -> crate::pb::TtlResponse {
        self.advance(now_ms);
        self.sm.ttl(key.as_bytes())
    }

    pub fn register(&mut self, stamp_ms: u64) -> u64 {
        match self.apply(stamp_ms, register()).result {
            Some(Outcome::Register(r)) => r.client_id,
            other => panic!("register answered {other:?}"),
        }
    }

    /// Moves cluster time to `now_ms` with a time entry, unless it is
    /// there already (as an idle leader does).
    pub fn advance(&mut self, now_ms: u64) {
        if now_ms > self.sm.time_ms() {
            let entry = Proposal {
                session: None,
                stamp_ms: now_ms,
                command: None,
                user: String::new(),
            };
            let r = self.apply_raw(&entry.encode_to_vec());
            assert_eq!(r.result, None, "a time entry has no answer");
        }
    }

    /// The value of `key` once cluster time has reached `now_ms`.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<String> {
        self.advance(now_ms);
        let r = self.sm.get(key.as_bytes());
        if r.found {
            Some(String::from_utf8(r.value.to_vec()).unwrap())
        } else {
            assert!(r.value.is_empty());
            None
        }
    }
}

pub(super) fn encode(session: Option<Session>, stamp_ms: u64, op: Op) -> Vec<u8> {
    Proposal {
        session,
        stamp_ms,
        command: Some(Command { op: Some(op) }),
        user: String::new(),
    }
    .encode_to_vec()
}

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(super) fn set(k: &str, v: &str) -> Op {
    Op::Set(SetCmd {
        key: b(k),
        value: b(v),
    })
}
pub(super) fn del(k: &str) -> Op {
    Op::Del(DelCmd { key: b(k) })
}
pub(super) fn incr(k: &str) -> Op {
    Op::Incr(IncrCmd { key: b(k) })
}
pub(super) fn expire(k: &str, seconds: u64) -> Op {
    Op::Expire(ExpireCmd { key: b(k), seconds })
}
pub(super) fn cas(k: &str, expected: Option<&str>, v: &str) -> Op {
    Op::Cas(CasCmd {
        key: b(k),
        expected: expected.map(b),
        value: b(v),
    })
}
pub(super) fn register() -> Op {
    Op::Register(RegisterSession {})
}

/// The error code of a refusal; panics on any other answer.
pub(super) fn error_code(r: &WriteResponse) -> Code {
    match &r.result {
        Some(Outcome::Error(e)) => e.code(),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(super) fn incr_value(r: &WriteResponse) -> i64 {
    match &r.result {
        Some(Outcome::Incr(i)) => i.value,
        other => panic!("expected an INCR result, got {other:?}"),
    }
}
