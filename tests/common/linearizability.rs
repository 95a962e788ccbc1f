//! Linearizability checker for key-value histories: Wing & Gong's backtracking
//! search with Lowe's memoization, as in Porcupine.
//!
//! Std-only, so that any integration test can include it with
//! `#[path = "common/linearizability.rs"] mod linearizability;`.
//!
//! Semantics:
//! - Every key is an independent register starting absent, so the history is
//!   linearizable iff each per-key sub-history is (P-compositionality). Checking
//!   keys separately keeps the search space small.
//! - An op with `ret: Some(t)` took effect exactly once between its call and `t`.
//! - An op with `ret: None` (timed out, client crashed) may have taken effect at
//!   any point after its call, or never (Knossos "info" ops). A harness must
//!   record an op it gave up on as `ret: None`, never with the give-up time: the
//!   server may still apply it later.
//! - A result of `None` means "unknown": the op is checked for its effect only.
//! - Equal timestamps count as concurrent (a call at the same instant as another
//!   op's return may be ordered either way), so clock granularity never causes
//!   a false violation.
//! - Values that are canonical decimal `i64`s are the same value whether they
//!   were written by SET or produced by INCR. INCR on text that is not an integer
//!   is excluded from histories: such an op can never be linearized.

// Each test crate that includes this file uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// One client operation on one key, as observed by the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub client: u64,
    pub key: String,
    pub kind: OpKind,
    /// When the client sent the request (ns, any common epoch).
    pub call: u64,
    /// When the client got the answer; `None` if it never did, so the op may or
    /// may not have taken effect.
    pub ret: Option<u64>,
}

/// The command and what the client observed it return (`None` = unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `Some(None)` = not found.
    Get {
        result: Option<Option<String>>,
    },
    Set {
        value: String,
    },
    /// Adds 1; an absent key counts as 0. `result` is the new value.
    Incr {
        result: Option<i64>,
    },
    /// `result`: whether the key existed.
    Del {
        result: Option<bool>,
    },
    /// Sets `new` iff the current value is `expected` (`None`: key absent).
    /// `result`: whether it swapped.
    Cas {
        expected: Option<String>,
        new: String,
        result: Option<bool>,
    },
}

/// Outcome of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Ok,
    /// The sub-history of `key` is not linearizable; `explanation` names the
    /// longest linearizable prefix found and the op that could not follow it.
    Violation {
        key: String,
        explanation: String,
    },
    /// The search for `key` gave up after `steps` steps (see [`Config`]).
    Unknown {
        key: String,
        steps: u64,
    },
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    pub fn is_violation(&self) -> bool {
        matches!(self, CheckResult::Violation { .. })
    }
}

/// Search limits; the search is exponential in the worst case, so a bound
/// turns a pathological history into `Unknown` instead of a hung test.
#[derive(Clone, Debug)]
pub struct Config {
    /// Per key: each attempt to linearize an op, and each backtrack, is a step.
    pub max_steps: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_steps: 10_000_000,
        }
    }
}

/// Checks `history` with the default [`Config`].
pub fn check(history: &[Op]) -> CheckResult {
    check_with(history, &Config::default())
}

/// Checks every key of `history`; reports the first violating key (in key
/// order), else the first key whose search hit the step bound, else `Ok`.
///
/// Panics on a malformed history (an op returning before its call): that is a
/// harness bug, not a property of the system under test.
pub fn check_with(history: &[Op], config: &Config) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Some(ret) = op.ret {
            assert!(
                ret >= op.call,
                "op #{i} returns at {ret}, before its call at {}",
                op.call
            );
        }
        by_key.entry(op.key.as_str()).or_default().push(i);
    }
    let mut unknown = None;
    for (key, indices) in by_key {
        match check_key(history, &indices, config) {
            KeyOutcome::Ok => {}
            KeyOutcome::Violation(explanation) => {
                return CheckResult::Violation {
                    key: key.to_string(),
                    explanation,
                };
            }
            KeyOutcome::Unknown(steps) => {
                unknown.get_or_insert(CheckResult::Unknown {
                    key: key.to_string(),
                    steps,
                });
            }
        }
    }
    unknown.unwrap_or(CheckResult::Ok)
}

// ---------------------------------------------------------------- model

/// A register value, interned so that states are `Copy` and cheap to hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    Absent,
    Int(i64),
    Str(u32),
}

#[derive(Default)]
struct Strings {
    ids: HashMap<String, u32>,
    list: Vec<String>,
}

impl Strings {
    fn val(&mut self, s: &str) -> Val {
        // Canonical integers compare equal to INCR results.
        if let Ok(n) = s.parse::<i64>() {
            if n.to_string() == s {
                return Val::Int(n);
            }
        }
        let next = self.list.len() as u32;
        let id = *self.ids.entry(s.to_string()).or_insert(next);
        if id == next {
            self.list.push(s.to_string());
        }
        Val::Str(id)
    }

    fn show(&self, v: Val) -> String {
        match v {
            Val::Absent => "<absent>".to_string(),
            Val::Int(n) => format!("\"{n}\""),
            Val::Str(id) => format!("{:?}", self.list[id as usize]),
        }
    }
}

/// An op's effect and expected result, with values interned.
#[derive(Clone, Copy)]
enum Cmd {
    Get(Val),
    Set(Val),
    Incr(Option<i64>),
    Del(Option<bool>),
    Cas {
        expected: Val,
        new: Val,
        result: Option<bool>,
    },
}

/// The sequential specification: the state after `cmd`, or `None` if `cmd`
/// cannot return what it returned in `state`.
fn step(state: Val, cmd: Cmd, strings: &Strings) -> Option<Val> {
    match cmd {
        Cmd::Get(v) => (state == v).then_some(state),
        Cmd::Set(v) => Some(v),
        Cmd::Incr(result) => {
            let n = match state {
                Val::Absent => 0,
                Val::Int(n) => n,
                // Lenient: whatever Rust parses as an integer ("+7", "007").
                Val::Str(id) => strings.list[id as usize].parse::<i64>().ok()?,
            };
            let n = n.checked_add(1)?;
            match result {
                Some(r) if r != n => None,
                _ => Some(Val::Int(n)),
            }
        }
        Cmd::Del(result) => {
            let existed = state != Val::Absent;
            match result {
                Some(r) if r != existed => None,
                _ => Some(Val::Absent),
            }
        }
        Cmd::Cas {
            expected,
            new,
            result,
        } => {
            let swap = state == expected;
            match result {
                Some(r) if r != swap => None,
                _ => Some(if swap { new } else { state }),
            }
        }
    }
}

/// An op of one key's sub-history, in search order.
struct Prepared {
    /// Index in the caller's history, for the explanation.
    orig: usize,
    cmd: Cmd,
    pending: bool,
}

// ---------------------------------------------------------------- search

enum KeyOutcome {
    Ok,
    Violation(String),
    Unknown(u64),
}

/// Where the deepest partial linearization got stuck.
#[derive(Default)]
struct Best {
    /// Ops (search indices) linearized, in order.
    prefix: Vec<usize>,
    /// The completed op whose return came with no way to linearize it.
    blocked: usize,
    /// Ops called but not linearized at that point (includes `blocked`).
    open: Vec<usize>,
}

fn check_key(history: &[Op], indices: &[usize], config: &Config) -> KeyOutcome {
    let mut strings = Strings::default();
    let mut ops: Vec<Prepared> = Vec::with_capacity(indices.len());
    for &i in indices {
        let op = &history[i];
        let cmd = match &op.kind {
            // A read with no known result, or that may never have happened,
            // constrains nothing and has no effect.
            OpKind::Get { result: None } => continue,
            OpKind::Get { .. } if op.ret.is_none() => continue,
            OpKind::Get {
                result: Some(found),
            } => Cmd::Get(found.as_deref().map_or(Val::Absent, |s| strings.val(s))),
            OpKind::Set { value } => Cmd::Set(strings.val(value)),
            OpKind::Incr { result } => Cmd::Incr(*result),
            OpKind::Del { result } => Cmd::Del(*result),
            OpKind::Cas {
                expected,
                new,
                result,
            } => Cmd::Cas {
                expected: expected.as_deref().map_or(Val::Absent, |s| strings.val(s)),
                new: strings.val(new),
                result: *result,
            },
        };
        ops.push(Prepared {
            orig: i,
            cmd,
            pending: op.ret.is_none(),
        });
    }
    // Completed ops first, by call time: the linearized set is then mostly a
    // run of leading ones, which the cache stores compactly.
    ops.sort_by_key(|p| (p.pending, history[p.orig].call, p.orig));
    let n = ops.len();
    if n == 0 {
        return KeyOutcome::Ok;
    }

    // Doubly linked list of call/return events (dancing links). Node 0 is the
    // head, op i has call node 2i+1 and return node 2i+2, 2n+1 is the tail.
    // Pending ops return after everything else.
    let tail = 2 * n + 1;
    let mut events: Vec<((bool, u64, bool, usize), usize)> = Vec::with_capacity(2 * n);
    for (i, p) in ops.iter().enumerate() {
        let op = &history[p.orig];
        events.push(((false, op.call, false, i), call_node(i)));
        let ret_key = match op.ret {
            Some(t) => (false, t, true, i),
            None => (true, 0, true, i),
        };
        events.push((ret_key, call_node(i) + 1));
    }
    // Calls sort before returns at equal times: equal times are concurrent.
    events.sort_unstable_by_key(|e| e.0);
    let mut next = vec![0; 2 * n + 2];
    let mut prev = vec![0; 2 * n + 2];
    let mut last = HEAD;
    for &(_, node) in &events {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    next[last] = tail;
    prev[tail] = last;

    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut zobrist = 0u64;
    let mut cache = Cache::default();
    let mut state = Val::Absent;
    // (op, state before it)
    let mut stack: Vec<(usize, Val)> = Vec::new();
    let mut best: Option<Best> = None;
    // `best.prefix[..low_water]` still equals `stack[..low_water]`, so a new
    // best only copies the part of the stack that changed.
    let mut low_water = 0;
    let mut steps = 0u64;
    let mut entry = next[HEAD];
    loop {
        if entry == tail {
            return KeyOutcome::Ok;
        }
        steps += 1;
        if steps > config.max_steps {
            return KeyOutcome::Unknown(config.max_steps);
        }
        let op = (entry - 1) / 2;
        if entry % 2 == 1 {
            // A call: try to linearize the op now.
            if let Some(new_state) = step(state, ops[op].cmd, &strings) {
                bits[op / 64] |= 1 << (op % 64);
                zobrist ^= op_hash(op);
                if cache.insert(mix(zobrist ^ val_hash(new_state)), &bits, new_state) {
                    stack.push((op, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, entry + 1);
                    entry = next[HEAD];
                    continue;
                }
                bits[op / 64] &= !(1 << (op % 64));
                zobrist ^= op_hash(op);
            }
            entry = next[entry];
        } else {
            // A return whose op is not linearized yet.
            if ops[op].pending {
                // Only pending ops are left: they need not take effect.
                return KeyOutcome::Ok;
            }
            if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                let b = best.get_or_insert_with(Best::default);
                b.prefix.truncate(low_water);
                b.prefix.extend(stack[low_water..].iter().map(|&(o, _)| o));
                low_water = stack.len();
                b.blocked = op;
                b.open.clear();
                let mut e = next[HEAD];
                while e != entry {
                    if e % 2 == 1 {
                        b.open.push((e - 1) / 2);
                    }
                    e = next[e];
                }
            }
            let Some((undo, before)) = stack.pop() else {
                let best = best.unwrap_or_default();
                return KeyOutcome::Violation(explain(history, &ops, &strings, &best, steps));
            };
            low_water = low_water.min(stack.len());
            bits[undo / 64] &= !(1 << (undo % 64));
            zobrist ^= op_hash(undo);
            state = before;
            let call = call_node(undo);
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
}

const HEAD: usize = 0;

fn call_node(op: usize) -> usize {
    2 * op + 1
}

/// Removes `x`, keeping its own links so that `relink` can restore it.
fn unlink(next: &mut [usize], prev: &mut [usize], x: usize) {
    next[prev[x]] = next[x];
    prev[next[x]] = prev[x];
}

/// Undoes `unlink(x)`; valid when undone in reverse order.
fn relink(next: &mut [usize], prev: &mut [usize], x: usize) {
    next[prev[x]] = x;
    prev[next[x]] = x;
}

/// splitmix64's finalizer: a cheap, well-mixed 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Zobrist key of an op: the XOR over the linearized set is kept
/// incrementally, so hashing a set costs O(1) per step.
fn op_hash(op: usize) -> u64 {
    mix((op as u64).wrapping_add(0x9e37_79b9_7f4a_7c15))
}

fn val_hash(v: Val) -> u64 {
    match v {
        Val::Absent => 0x5851_f42d_4c95_7f2d,
        Val::Int(n) => mix(n as u64 ^ 0x1405_7b7e_f767_814f),
        Val::Str(id) => mix(u64::from(id) ^ 0x2545_f491_4f6c_dd1d),
    }
}

/// Lowe's memo: (linearized set, state) pairs already explored. Reaching one
/// again cannot succeed where it failed before.
#[derive(Default)]
struct Cache {
    map: HashMap<u64, Vec<Seen>, BuildHasherDefault<IdHasher>>,
}

/// A set stored as (number of leading all-ones words, the words after them up
/// to the last non-zero one): linearized sets are mostly a prefix.
struct Seen {
    lead: u32,
    words: Box<[u64]>,
    state: Val,
}

impl Cache {
    /// Returns false if the pair was already there.
    fn insert(&mut self, hash: u64, bits: &[u64], state: Val) -> bool {
        let lead = bits.iter().take_while(|&&w| w == u64::MAX).count();
        let end = bits.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
        let words = &bits[lead..end.max(lead)];
        let bucket = self.map.entry(hash).or_default();
        let seen = bucket
            .iter()
            .any(|s| s.state == state && s.lead as usize == lead && *s.words == *words);
        if !seen {
            bucket.push(Seen {
                lead: lead as u32,
                words: words.into(),
                state,
            });
        }
        !seen
    }
}

/// The keys are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// ---------------------------------------------------------------- explanation

/// How many ops of the prefix and of the open set to print.
const SHOW: usize = 12;

fn explain(history: &[Op], ops: &[Prepared], strings: &Strings, best: &Best, steps: u64) -> String {
    use fmt::Write as _;
    let key = ops.first().map_or("", |p| history[p.orig].key.as_str());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "key {key:?}: not linearizable ({} ops, {steps} search steps)",
        ops.len()
    );
    let _ = writeln!(
        out,
        "longest linearizable prefix found: {} ops",
        best.prefix.len()
    );
    let mut state = Val::Absent;
    let skip = best.prefix.len().saturating_sub(SHOW);
    if skip > 0 {
        let _ = writeln!(out, "  ... {skip} earlier ops");
    }
    for (i, &op) in best.prefix.iter().enumerate() {
        // The prefix was built with `step`, so it replays.
        state = step(state, ops[op].cmd, strings).unwrap_or(state);
        if i >= skip {
            let _ = writeln!(
                out,
                "  {}  => {}",
                Shown(history, ops[op].orig),
                strings.show(state)
            );
        }
    }
    let _ = writeln!(out, "value after the prefix: {}", strings.show(state));
    let _ = writeln!(
        out,
        "no op can follow it before this op's return, so this op cannot be placed:\n  {}",
        Shown(history, ops[best.blocked].orig)
    );
    let _ = writeln!(
        out,
        "ops open then (called, not linearized; every order of them fails):"
    );
    for &op in best.open.iter().take(SHOW) {
        let _ = writeln!(out, "  {}", Shown(history, ops[op].orig));
    }
    if best.open.len() > SHOW {
        let _ = writeln!(out, "  ... {} more", best.open.len() - SHOW);
    }
    out
}

/// Displays history[i] as `#i client c get -> "v" [call 1, ret 2]`.
struct Shown<'a>(&'a [Op], usize);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = &self.0[self.1];
        write!(f, "#{} client {} ", self.1, op.client)?;
        fn res<T: fmt::Debug>(r: &Option<T>) -> String {
            r.as_ref().map_or("?".to_string(), |v| format!("{v:?}"))
        }
        match &op.kind {
            OpKind::Get { result } => match result {
                None => write!(f, "get -> ?")?,
                Some(None) => write!(f, "get -> not found")?,
                Some(Some(v)) => write!(f, "get -> {v:?}")?,
            },
            OpKind::Set { value } => write!(f, "set {value:?}")?,
            OpKind::Incr { result } => write!(f, "incr -> {}", res(result))?,
            OpKind::Del { result } => write!(f, "del -> existed {}", res(result))?,
            OpKind::Cas {
                expected,
                new,
                result,
            } => match expected {
                Some(e) => write!(f, "cas {e:?} -> {new:?}: swapped {}", res(result))?,
                None => write!(f, "cas <absent> -> {new:?}: swapped {}", res(result))?,
            },
        }
        match op.ret {
            Some(ret) => write!(f, " [call {}, ret {ret}]", op.call),
            None => write!(f, " [call {}, never returned]", op.call),
        }
    }
}
