//! Size limits on keys and values.
//!
//! Checked twice: by the leader before proposing (`StateMachine::validate`,
//! so clients get a fast, clear refusal) and again in `apply` (so an entry
//! that slipped past a leader with other limits, or a hand-crafted one, is
//! refused identically on every replica instead of corrupting state).

use super::error::kv_error;
use crate::pb::kv_error::Code;
use crate::pb::{Command, KvError, command::Op};

/// Longest member address (`host:port`; a DNS name is at most 253 bytes).
const MAX_ADDR_BYTES: usize = 300;

/// Size limits for keys and values. The defaults: keys up to 4 KiB, values
/// up to 1 MiB.
///
/// Every replica of a cluster must use the same limits: `apply` enforces
/// them, so replicas with different limits would answer an entry differently
/// and diverge. (A snapshot is restored whatever the limits, see `restore`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest key accepted, in bytes. Empty keys are always refused.
    pub max_key_bytes: usize,
    /// Largest value accepted, in bytes (also bounds CAS's expected value).
    pub max_value_bytes: usize,
    /// Most client sessions kept (the least recently active is evicted
    /// beyond it). Not a setting of the node: always [`MAX_SESSIONS`] in
    /// the product; the simulator lowers it so that eviction happens within
    /// a short run.
    ///
    /// [`MAX_SESSIONS`]: super::MAX_SESSIONS
    pub max_sessions: usize,
    /// Most bytes of kept answers per client (see [`MAX_KEPT_BYTES_PER_CLIENT`]).
    /// Not a setting of the node either; tests and the simulator lower it.
    ///
    /// [`MAX_KEPT_BYTES_PER_CLIENT`]: super::MAX_KEPT_BYTES_PER_CLIENT
    pub max_kept_bytes_per_client: usize,
    /// Most bytes of kept answers for all clients (see [`MAX_KEPT_BYTES`]).
    ///
    /// [`MAX_KEPT_BYTES`]: super::MAX_KEPT_BYTES
    pub max_kept_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            max_sessions: super::MAX_SESSIONS,
            max_kept_bytes_per_client: super::MAX_KEPT_BYTES_PER_CLIENT,
            max_kept_bytes: super::MAX_KEPT_BYTES,
        }
    }
}

impl Limits {
    /// Refuses a command whose key or value breaks a limit, or that carries
    /// no operation at all.
    pub(crate) fn check(&self, cmd: &Command) -> Result<(), KvError> {
        match cmd.op.as_ref() {
            None => Err(super::error::invalid("command carries no operation")),
            Some(Op::Set(c)) => {
                self.check_key(&c.key)?;
                self.check_value(&c.value)
            }
            Some(Op::Del(c)) => self.check_key(&c.key),
            Some(Op::Incr(c)) => self.check_key(&c.key),
            Some(Op::Expire(c)) => self.check_key(&c.key),
            Some(Op::Cas(c)) => {
                self.check_key(&c.key)?;
                if let Some(expected) = &c.expected {
                    self.check_value(expected)?;
                }
                self.check_value(&c.value)
            }
            Some(Op::Register(_) | Op::StateCheck(_) | Op::StateReport(_) | Op::Auth(_)) => Ok(()),
            Some(Op::MemberAddrs(m)) => {
                if m.peer_addr.len() > MAX_ADDR_BYTES || m.client_addr.len() > MAX_ADDR_BYTES {
                    return Err(super::error::invalid(format!(
                        "member address longer than {MAX_ADDR_BYTES} bytes"
                    )));
                }
                Ok(())
            }
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(kv_error(Code::EmptyKey, "the key is empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(kv_error(
                Code::KeyTooLarge,
                format!(
                    "the key is {} bytes; the limit is {} bytes",
                    key.len(),
                    self.max_key_bytes
                ),
            ));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.max_value_bytes {
            return Err(kv_error(
                Code::ValueTooLarge,
                format!(
                    "the value is {} bytes; the limit is {} bytes",
                    value.len(),
                    self.max_value_bytes
                ),
            ));
        }
        Ok(())
    }
}
