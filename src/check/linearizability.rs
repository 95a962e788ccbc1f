//! Linearizability checker for key-value histories: Wing & Gong's backtracking
//! search with Lowe's memoization, as in Porcupine.
//!
//! Std-only; used by the simulator, the process tests and `raftctl chaos`.
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
//! - Expiry runs on cluster time, a clock the system keeps in
//!   its log. An op may carry `at`, the cluster time (ms) the system evaluated
//!   it at: a key whose deadline is at or before `at` is absent, EXPIRE sets
//!   the deadline `at + seconds`, TTL reports the seconds left rounded up.
//!   Cluster time is part of the replicated state, so it never runs backwards
//!   along the linearization: an op whose `at` is below that of an op
//!   linearized before it cannot go there. An op without `at` is evaluated at
//!   the cluster time of the op before it (and leaves it unchanged).

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
    /// The cluster time (ms) at which the system evaluated the op, if known.
    pub at: Option<u64>,
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
    /// The key expires `seconds` later (at once for 0). `result`: whether the
    /// key existed.
    Expire {
        seconds: u64,
        result: Option<bool>,
    },
    Ttl {
        result: Option<TtlSeen>,
    },
}

/// What TTL answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TtlSeen {
    Missing,
    NoExpiry,
    /// Seconds left, rounded up.
    Seconds(u64),
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
            max_steps: 5_000_000,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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
    Expire {
        seconds: u64,
        result: Option<bool>,
    },
    Ttl(TtlSeen),
}

/// One key's state in the model: its value, its deadline and the cluster
/// time of the latest op linearized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    val: Val,
    deadline: Option<u64>,
    now: u64,
}

const START: State = State {
    val: Val::Absent,
    deadline: None,
    now: 0,
};

/// The sequential specification: the state after `op`, or `None` if it
/// cannot return what it returned in `state` (or its cluster time is below
/// the state's).
fn step(state: State, op: &Prepared, strings: &Strings) -> Option<State> {
    let t = match op.at {
        Some(t) if t < state.now => return None,
        Some(t) => t,
        None => state.now,
    };
    let mut s = State { now: t, ..state };
    if s.deadline.is_some_and(|d| d <= t) {
        s.val = Val::Absent;
        s.deadline = None;
    }
    let val = step_value(s.val, op.cmd, strings)?;
    let deadline = match op.cmd {
        // Overwriting clears the deadline; INCR and a failed CAS keep it.
        Cmd::Set(_) | Cmd::Del(_) => None,
        Cmd::Cas { expected, .. } if s.val == expected => None,
        Cmd::Expire { seconds, .. } if s.val != Val::Absent => {
            let d = t.saturating_add(seconds.saturating_mul(1000));
            if d <= t {
                return Some(State {
                    val: Val::Absent,
                    deadline: None,
                    now: t,
                });
            }
            Some(d)
        }
        Cmd::Ttl(seen) => {
            let expected = match (s.val, s.deadline) {
                (Val::Absent, _) => TtlSeen::Missing,
                (_, None) => TtlSeen::NoExpiry,
                (_, Some(d)) => TtlSeen::Seconds((d - t).div_ceil(1000)),
            };
            if seen != expected {
                return None;
            }
            s.deadline
        }
        _ => s.deadline,
    };
    Some(State {
        val,
        deadline: if val == Val::Absent { None } else { deadline },
        now: t,
    })
}

/// The value after `cmd` on a live value `state` (deadlines aside).
fn step_value(state: Val, cmd: Cmd, strings: &Strings) -> Option<Val> {
    match cmd {
        Cmd::Get(v) => (state == v).then_some(state),
        Cmd::Ttl(_) => Some(state),
        Cmd::Expire { result, .. } => {
            let existed = state != Val::Absent;
            match result {
                Some(r) if r != existed => None,
                _ => Some(state),
            }
        }
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
    at: Option<u64>,
    call: u64,
    ret: Option<u64>,
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

/// A step back for the search to take.
enum Frame {
    /// A completed op was linearized from a configuration that was `closed`;
    /// `forced` if that was the only choice tried there (see
    /// [`Search::pure_candidate`]).
    Done {
        op: usize,
        before: State,
        closed: bool,
        forced: bool,
    },
    /// The completed ops were exhausted in a configuration; these are the
    /// ways to continue by first linearizing some pending ops (found by
    /// [`Search::closure`]), and the one being explored.
    Closure {
        before: State,
        items: Vec<(State, Vec<usize>)>,
        current: usize,
    },
}

/// The state of the search over one key's ops. Ops `0..done_ops` completed,
/// the rest are pending (never returned).
///
/// Pending ops stay callable forever, so trying them at every point like the
/// completed ones (as plain Wing & Gong does) multiplies the search by the
/// subsets of them. Instead, when the completed ops run out in a
/// configuration, its "closure" (every state reachable by linearizing only
/// pending ops there) is computed breadth first, with two reductions:
/// - dominance: with the same completed ops and state, having linearized
///   fewer pending ops is at least as good (the others may still happen, or
///   never), so the cache skips a configuration if one with a subset of its
///   pending ops was seen; breadth first finds the subsets first;
/// - symmetry: pending ops with the same command are interchangeable once
///   called, so only the earliest-called unused one of each is tried.
///
/// A configuration reached inside a closure is "closed": its own closure is
/// part of the enclosing one.
struct Search<'a> {
    ops: &'a [Prepared],
    strings: &'a Strings,
    done_ops: usize,
    /// Dancing links over completed ops: node 0 is the head, op i has call
    /// node 2i+1 and return node 2i+2, 2*done_ops+1 is the tail.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Pending ops grouped by command, each group in call order.
    classes: Vec<Vec<usize>>,
    /// Class of pending op `done_ops + j`.
    class_of: Vec<usize>,
    /// How many ops of each class are linearized (always the first ones).
    used: Vec<usize>,
    /// Linearized completed ops, and linearized pending ops (index - done_ops).
    done_bits: Vec<u64>,
    pending_bits: Vec<u64>,
    /// Zobrist hash of `done_bits`.
    zobrist: u64,
    state: State,
    /// Linearized ops in order.
    path: Vec<usize>,
    frames: Vec<Frame>,
    cache: Cache,
    steps: u64,
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
            OpKind::Expire { seconds, result } => Cmd::Expire {
                seconds: *seconds,
                result: *result,
            },
            OpKind::Ttl { result: None } => continue,
            OpKind::Ttl { .. } if op.ret.is_none() => continue,
            OpKind::Ttl { result: Some(seen) } => Cmd::Ttl(*seen),
        };
        ops.push(Prepared {
            orig: i,
            cmd,
            at: op.at,
            call: op.call,
            ret: op.ret,
        });
    }
    // Completed ops first, each group by call time: linearized sets are then
    // mostly a run of leading ones, which the cache stores compactly.
    ops.sort_by_key(|p| (p.ret.is_none(), p.call, p.orig));
    if ops.is_empty() {
        return KeyOutcome::Ok;
    }
    let mut search = Search::new(&ops, &strings);
    match search.run(config.max_steps) {
        Ok(true) => KeyOutcome::Ok,
        Ok(false) => KeyOutcome::Unknown(config.max_steps),
        Err(best) => KeyOutcome::Violation(explain(history, &ops, &strings, &best, search.steps)),
    }
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Prepared], strings: &'a Strings) -> Self {
        let done_ops = ops.iter().take_while(|p| p.ret.is_some()).count();
        let pending_ops = ops.len() - done_ops;

        // Calls sort before returns at equal times: equal times are concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * done_ops);
        for (i, p) in ops[..done_ops].iter().enumerate() {
            events.push((p.call, false, i));
            events.push((p.ret.unwrap_or(u64::MAX), true, i));
        }
        events.sort_unstable();
        let nodes = events
            .iter()
            .map(|&(_, is_ret, i)| 2 * i + 1 + usize::from(is_ret));
        let (next, prev) = links(nodes, 2 * done_ops + 2);

        // `ops` is sorted, so each class is in call order.
        let mut class_ids: HashMap<(Cmd, Option<u64>), usize> = HashMap::new();
        let mut classes: Vec<Vec<usize>> = Vec::new();
        let mut class_of = Vec::with_capacity(pending_ops);
        for (op, p) in ops.iter().enumerate().skip(done_ops) {
            let class = *class_ids.entry((p.cmd, p.at)).or_insert(classes.len());
            if class == classes.len() {
                classes.push(Vec::new());
            }
            classes[class].push(op);
            class_of.push(class);
        }

        Search {
            ops,
            strings,
            done_ops,
            next,
            prev,
            used: vec![0; classes.len()],
            classes,
            class_of,
            done_bits: vec![0; done_ops.div_ceil(64)],
            pending_bits: vec![0; pending_ops.div_ceil(64)],
            zobrist: 0,
            state: START,
            path: Vec::new(),
            frames: Vec::new(),
            cache: Cache::default(),
            steps: 0,
        }
    }

    /// Ok(true): linearizable; Ok(false): out of steps; Err: not linearizable,
    /// with where the deepest attempt got stuck.
    fn run(&mut self, max_steps: u64) -> Result<bool, Best> {
        let tail = self.next.len() - 1;
        let mut best: Option<Best> = None;
        // `best.prefix[..low_water]` still equals `path[..low_water]`, so a
        // new best only copies the part of the path that changed.
        let mut low_water = 0;
        let mut entry = self.next[HEAD];
        let mut closed = false;
        // Whether the configuration was just entered (not resumed).
        let mut fresh = true;
        loop {
            self.steps += 1;
            if self.steps > max_steps {
                return Ok(false);
            }
            if entry == tail {
                return Ok(true);
            }
            if fresh {
                fresh = false;
                if let Some(op) = self.pure_candidate() {
                    // Forced: the configuration succeeds iff it does after `op`.
                    if self.try_step(op).is_some() {
                        self.push_done(op, self.state, closed, true);
                        entry = self.next[HEAD];
                        (closed, fresh) = (false, true);
                        continue;
                    }
                    // Seen (and failed) before.
                    let Some(resume) = self.backtrack(&mut low_water) else {
                        return Err(best.unwrap_or_default());
                    };
                    (entry, closed, fresh) = resume;
                    continue;
                }
            }
            if entry % 2 == 1 {
                // A completed op's call: try to linearize it now.
                let op = (entry - 1) / 2;
                if let Some(after) = self.try_step(op) {
                    self.push_done(op, after, closed, false);
                    entry = self.next[HEAD];
                    (closed, fresh) = (false, true);
                } else {
                    entry = self.next[entry];
                }
                continue;
            }
            // The first return: no completed op can go next here.
            if !closed {
                let items = self.closure(entry, max_steps);
                if !items.is_empty() {
                    let before = self.state;
                    self.apply(&items[0]);
                    self.frames.push(Frame::Closure {
                        before,
                        items,
                        current: 0,
                    });
                    entry = self.next[HEAD];
                    (closed, fresh) = (true, true);
                    continue;
                }
            }
            // Nothing can go before the op of `entry` returns.
            if best
                .as_ref()
                .is_none_or(|b| self.path.len() > b.prefix.len())
            {
                let b = best.get_or_insert_with(Best::default);
                b.prefix.truncate(low_water);
                b.prefix.extend_from_slice(&self.path[low_water..]);
                low_water = self.path.len();
                b.blocked = (entry - 1) / 2;
                b.open = self.open_before(entry);
            }
            let Some(resume) = self.backtrack(&mut low_water) else {
                return Err(best.unwrap_or_default());
            };
            (entry, closed, fresh) = resume;
        }
    }

    /// Linearizes completed op `op`, leading to state `after`.
    fn push_done(&mut self, op: usize, after: State, closed: bool, forced: bool) {
        self.frames.push(Frame::Done {
            op,
            before: self.state,
            closed,
            forced,
        });
        self.state = after;
        self.path.push(op);
        unlink(&mut self.next, &mut self.prev, 2 * op + 1);
        unlink(&mut self.next, &mut self.prev, 2 * op + 2);
    }

    /// Undoes choices back to the latest one with an alternative left, and
    /// returns where to resume: (entry, closed, fresh). None if there is none.
    fn backtrack(&mut self, low_water: &mut usize) -> Option<(usize, bool, bool)> {
        loop {
            let frame = self.frames.pop()?;
            match frame {
                Frame::Done {
                    op,
                    before,
                    closed,
                    forced,
                } => {
                    self.flip(op);
                    self.state = before;
                    self.path.pop();
                    *low_water = (*low_water).min(self.path.len());
                    relink(&mut self.next, &mut self.prev, 2 * op + 2);
                    relink(&mut self.next, &mut self.prev, 2 * op + 1);
                    if !forced {
                        return Some((self.next[2 * op + 1], closed, false));
                    }
                }
                Frame::Closure {
                    before,
                    items,
                    current,
                } => {
                    let undone = &items[current].1;
                    for &op in undone {
                        self.flip(op);
                    }
                    self.path.truncate(self.path.len() - undone.len());
                    *low_water = (*low_water).min(self.path.len());
                    self.state = before;
                    if current + 1 < items.len() {
                        self.apply(&items[current + 1]);
                        self.frames.push(Frame::Closure {
                            before,
                            items,
                            current: current + 1,
                        });
                        return Some((self.next[HEAD], true, true));
                    }
                }
            }
        }
    }

    /// A completed op that can go next without changing the state and whose
    /// success never depends on the state changing later (a read, a failed
    /// CAS, a DEL of nothing). Linearizing it right away loses nothing: it
    /// may move before any op it did not have to follow.
    fn pure_candidate(&self) -> Option<usize> {
        let mut e = self.next[HEAD];
        while e % 2 == 1 && e != self.next.len() - 1 {
            let op = (e - 1) / 2;
            let cmd = self.ops[op].cmd;
            let pure = matches!(
                cmd,
                Cmd::Get(_)
                    | Cmd::Ttl(_)
                    | Cmd::Cas {
                        result: Some(false),
                        ..
                    }
                    | Cmd::Del(Some(false))
                    | Cmd::Expire {
                        result: Some(false),
                        ..
                    }
            );
            if pure && step(self.state, &self.ops[op], self.strings) == Some(self.state) {
                return Some(op);
            }
            e = self.next[e];
        }
        None
    }

    /// The state after linearizing `op` next, if the model allows it and the
    /// resulting configuration is not known to fail; marks `op` linearized.
    fn try_step(&mut self, op: usize) -> Option<State> {
        let after = step(self.state, &self.ops[op], self.strings)?;
        self.flip(op);
        let hash = mix(self.zobrist ^ state_hash(after));
        if self
            .cache
            .visit(hash, &self.done_bits, &self.pending_bits, after)
        {
            Some(after)
        } else {
            self.flip(op);
            None
        }
    }

    /// New configurations reachable from the current one by linearizing only
    /// pending ops called before `boundary` returns, fewest ops first.
    fn closure(&mut self, boundary: usize, max_steps: u64) -> Vec<(State, Vec<usize>)> {
        let deadline = self.ops[(boundary - 1) / 2].ret.unwrap_or(u64::MAX);
        let mut items: Vec<(State, Vec<usize>)> = Vec::new();
        let mut level = vec![(self.state, Vec::new())];
        while !level.is_empty() && self.steps <= max_steps {
            let first_new = items.len();
            for (state, added) in &level {
                for &op in added {
                    self.flip(op);
                }
                for class in 0..self.classes.len() {
                    let Some(&op) = self.classes[class].get(self.used[class]) else {
                        continue;
                    };
                    if self.ops[op].call > deadline {
                        continue;
                    }
                    self.steps += 1;
                    let Some(after) = step(*state, &self.ops[op], self.strings) else {
                        continue;
                    };
                    self.flip(op);
                    let hash = mix(self.zobrist ^ state_hash(after));
                    if self
                        .cache
                        .visit(hash, &self.done_bits, &self.pending_bits, after)
                    {
                        let mut ops = added.clone();
                        ops.push(op);
                        items.push((after, ops));
                    }
                    self.flip(op);
                }
                for &op in added {
                    self.flip(op);
                }
            }
            level = items[first_new..].to_vec();
        }
        items
    }

    /// Linearizes the pending ops of a closure item.
    fn apply(&mut self, item: &(State, Vec<usize>)) {
        for &op in &item.1 {
            self.flip(op);
        }
        self.path.extend_from_slice(&item.1);
        self.state = item.0;
    }

    /// Toggles whether `op` is linearized.
    fn flip(&mut self, op: usize) {
        if op < self.done_ops {
            self.done_bits[op / 64] ^= 1 << (op % 64);
            self.zobrist ^= op_hash(op);
        } else {
            let j = op - self.done_ops;
            let word = &mut self.pending_bits[j / 64];
            *word ^= 1 << (j % 64);
            let class = self.class_of[j];
            if *word & (1 << (j % 64)) != 0 {
                self.used[class] += 1;
            } else {
                self.used[class] -= 1;
            }
        }
    }

    /// Ops called but not linearized before `boundary` returns.
    fn open_before(&self, boundary: usize) -> Vec<usize> {
        let mut open = Vec::new();
        let mut e = self.next[HEAD];
        while e != boundary {
            if e % 2 == 1 {
                open.push((e - 1) / 2);
            }
            e = self.next[e];
        }
        let deadline = self.ops[(boundary - 1) / 2].ret.unwrap_or(u64::MAX);
        for (class, members) in self.classes.iter().enumerate() {
            let unused = &members[self.used[class]..];
            open.extend(unused.iter().filter(|&&op| self.ops[op].call <= deadline));
        }
        open
    }
}

const HEAD: usize = 0;

/// Builds a doubly linked list of `nodes` between head 0 and tail `len - 1`.
fn links(nodes: impl Iterator<Item = usize>, len: usize) -> (Vec<usize>, Vec<usize>) {
    let mut next = vec![0; len];
    let mut prev = vec![0; len];
    let mut last = HEAD;
    for node in nodes {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    next[last] = len - 1;
    prev[len - 1] = last;
    (next, prev)
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

fn state_hash(s: State) -> u64 {
    let deadline = s
        .deadline
        .map_or(0x3c6e_f372_fe94_f82b, |d| mix(d ^ 0xa54f_f53a_5f1d_36f1));
    mix(val_hash(s.val) ^ deadline.rotate_left(17) ^ mix(s.now).rotate_left(41))
}

fn val_hash(v: Val) -> u64 {
    match v {
        Val::Absent => 0x5851_f42d_4c95_7f2d,
        Val::Int(n) => mix(n as u64 ^ 0x1405_7b7e_f767_814f),
        Val::Str(id) => mix(u64::from(id) ^ 0x2545_f491_4f6c_dd1d),
    }
}

/// Lowe's memo of configurations already explored (and so failed), extended
/// for pending ops: with the same completed ops linearized and the same
/// state, having linearized fewer pending ops is at least as good (the others
/// may still happen, or never), so a configuration is skipped when one with a
/// subset of its pending ops was explored.
#[derive(Default)]
struct Cache {
    /// Keyed by the hash of (completed set, state).
    map: HashMap<u64, Vec<Seen>, BuildHasherDefault<IdHasher>>,
}

/// A completed set stored as (number of leading all-ones words, the words
/// after them up to the last non-zero one): it is mostly a prefix.
struct Seen {
    lead: u32,
    words: Box<[u64]>,
    state: State,
    /// Linearized pending ops, trailing zero words trimmed.
    pending: Box<[u64]>,
}

impl Cache {
    /// Records the configuration; false if it is dominated by a seen one.
    fn visit(&mut self, hash: u64, done: &[u64], pending: &[u64], state: State) -> bool {
        let lead = done.iter().take_while(|&&w| w == u64::MAX).count();
        let end = done.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
        let words = &done[lead..end.max(lead)];
        let pending = &pending[..pending.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1)];
        let bucket = self.map.entry(hash).or_default();
        let same = |s: &Seen| s.state == state && s.lead as usize == lead && *s.words == *words;
        if bucket
            .iter()
            .any(|s| same(s) && subset(&s.pending, pending))
        {
            return false;
        }
        bucket.retain(|s| !(same(s) && subset(pending, &s.pending)));
        bucket.push(Seen {
            lead: lead as u32,
            words: words.into(),
            state,
            pending: pending.into(),
        });
        true
    }
}

fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter()
        .enumerate()
        .all(|(i, &w)| w & !b.get(i).copied().unwrap_or(0) == 0)
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
    let mut state = START;
    let skip = best.prefix.len().saturating_sub(SHOW);
    if skip > 0 {
        let _ = writeln!(out, "  ... {skip} earlier ops");
    }
    for (i, &op) in best.prefix.iter().enumerate() {
        // The prefix was built with `step`, so it replays.
        state = step(state, &ops[op], strings).unwrap_or(state);
        if i >= skip {
            let _ = writeln!(
                out,
                "  {}  => {}",
                Shown(history, ops[op].orig),
                show_state(strings, state)
            );
        }
    }
    let _ = writeln!(
        out,
        "value after the prefix: {}",
        show_state(strings, state)
    );
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

fn show_state(strings: &Strings, s: State) -> String {
    match s.deadline {
        Some(d) => format!("{} (expires at {d}, time {})", strings.show(s.val), s.now),
        None => format!("{} (time {})", strings.show(s.val), s.now),
    }
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
            OpKind::Expire { seconds, result } => {
                write!(f, "expire {seconds}s -> existed {}", res(result))?
            }
            OpKind::Ttl { result } => write!(f, "ttl -> {}", res(result))?,
        }
        if let Some(at) = op.at {
            write!(f, " @{at}")?;
        }
        match op.ret {
            Some(ret) => write!(f, " [call {}, ret {ret}]", op.call),
            None => write!(f, " [call {}, never returned]", op.call),
        }
    }
}
