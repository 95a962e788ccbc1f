//! The effect of each write command on the store, at state-machine time `t`.
//!
//! Every function first drops the key if it expired at `t` (lazy expiry), so
//! the outcome depends only on the log, never on how far the sweep got.

use super::error::kv_error;
use super::store::{Item, Store};
use crate::pb::kv_error::Code;
use crate::pb::write_response::Result as Outcome;
use crate::pb::{CasCmd, CasResult, DelResult, ExpireResult, IncrResult, SetResult};
use bytes::Bytes;

/// `SET k v`: writes the value and clears any expiry (as Redis does), so a
/// rewritten key does not vanish on an old deadline.
pub(crate) fn set(store: &mut Store, key: Bytes, value: Bytes) -> Outcome {
    store.insert(
        key,
        Item {
            value,
            deadline: None,
        },
    );
    Outcome::Set(SetResult {})
}

/// `DEL k`: reports whether a live key existed.
pub(crate) fn del(store: &mut Store, key: &[u8], t: u64) -> Outcome {
    store.expire_if_due(key, t);
    let existed = store.remove(key).is_some();
    Outcome::Del(DelResult { existed })
}

/// `INCR k`: adds 1 to the decimal i64 stored under `k` (a missing key counts
/// as 0) and keeps the key's expiry. A value that is not a decimal i64, or
/// would overflow, is refused and left as it was.
pub(crate) fn incr(store: &mut Store, key: Bytes, t: u64) -> Outcome {
    store.expire_if_due(&key, t);
    let (current, deadline) = match store.live(&key, t) {
        None => (0, None),
        Some(item) => match parse_integer(&item.value) {
            Some(n) => (n, item.deadline),
            None => {
                return Outcome::Error(kv_error(
                    Code::NotAnInteger,
                    "the value is not a canonical decimal 64-bit integer (no '+', no leading zeros)",
                ));
            }
        },
    };
    let Some(next) = current.checked_add(1) else {
        return Outcome::Error(kv_error(
            Code::Overflow,
            "incrementing would overflow a 64-bit integer",
        ));
    };
    store.insert(
        key,
        Item {
            value: Bytes::from(next.to_string()),
            deadline,
        },
    );
    Outcome::Incr(IncrResult { value: next })
}

/// An integer as INCR reads and writes it: canonical decimal only, as
/// Redis reads integers — an optional '-', then `0` or digits without a
/// leading zero, within i64. Refused: `+5`, `007`, `-0`, spaces, the empty
/// string. One form per number, so the stored text of a counter is exactly
/// what INCR would have written. raftctl parses its integer arguments with
/// this function too (docs/raftctl.md).
pub fn parse_integer(value: &[u8]) -> Option<i64> {
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == value.len(),
        [first, ..] => *first != b'0',
    };
    if !canonical || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `EXPIRE k secs`: the key is deleted once state-machine time reaches
/// `t + secs`. A missing key reports `applied = false`; `secs = 0` deletes the
/// key now (its deadline has already been reached).
pub(crate) fn expire(store: &mut Store, key: Bytes, seconds: u64, t: u64) -> Outcome {
    store.expire_if_due(&key, t);
    let Some(item) = store.live(&key, t) else {
        return Outcome::Expire(ExpireResult { applied: false });
    };
    let deadline = t.saturating_add(seconds.saturating_mul(1000));
    if deadline <= t {
        store.remove(&key);
    } else {
        let item = Item {
            value: item.value.clone(),
            deadline: Some(deadline),
        };
        store.insert(key, item);
    }
    Outcome::Expire(ExpireResult { applied: true })
}

/// `CAS k expected new`: writes `new` (clearing any expiry, like SET) if the
/// live value equals `expected`, or if `expected` is absent and the key does
/// not exist. Reports whether it swapped and the value now stored.
pub(crate) fn cas(store: &mut Store, cmd: CasCmd, t: u64) -> Outcome {
    store.expire_if_due(&cmd.key, t);
    let current = store.live(&cmd.key, t).map(|item| item.value.clone());
    if current != cmd.expected {
        return Outcome::Cas(CasResult {
            swapped: false,
            current,
        });
    }
    set(store, cmd.key, cmd.value.clone());
    Outcome::Cas(CasResult {
        swapped: true,
        current: Some(cmd.value),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_integer as parse_i64;

    #[test]
    fn parse_i64_is_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-17"), Some(-17));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"abc",
            b"99999999999999999999",
            b"007",
            b"-0",
            b"-01",
            b"00",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
