//! Unit tests of the linearizability checker (raftkv::check::linearizability).

use std::time::Instant;

use raftkv::check::linearizability::{CheckResult, Config, Op, OpKind, TtlSeen, check, check_with};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- builders

const K: &str = "k";

fn op(client: u64, kind: OpKind, call: u64, ret: Option<u64>) -> Op {
    Op {
        client,
        key: K.to_string(),
        kind,
        call,
        ret,
        at: None,
    }
}

fn get(client: u64, call: u64, ret: u64, result: Option<&str>) -> Op {
    let result = Some(result.map(str::to_string));
    op(client, OpKind::Get { result }, call, Some(ret))
}

fn set(client: u64, call: u64, ret: u64, value: &str) -> Op {
    let value = value.to_string();
    op(client, OpKind::Set { value }, call, Some(ret))
}

fn set_timed_out(client: u64, call: u64, value: &str) -> Op {
    let value = value.to_string();
    op(client, OpKind::Set { value }, call, None)
}

fn incr(client: u64, call: u64, ret: u64, result: i64) -> Op {
    let result = Some(result);
    op(client, OpKind::Incr { result }, call, Some(ret))
}

fn del(client: u64, call: u64, ret: u64, existed: bool) -> Op {
    let result = Some(existed);
    op(client, OpKind::Del { result }, call, Some(ret))
}

fn cas(client: u64, call: u64, ret: u64, expected: Option<&str>, new: &str, swapped: bool) -> Op {
    let kind = OpKind::Cas {
        expected: expected.map(str::to_string),
        new: new.to_string(),
        result: Some(swapped),
    };
    op(client, kind, call, Some(ret))
}

fn on_key(mut op: Op, key: &str) -> Op {
    op.key = key.to_string();
    op
}

#[track_caller]
fn assert_ok(history: &[Op]) {
    let r = check(history);
    assert!(r.is_ok(), "expected linearizable, got {r:#?}");
}

/// Returns the explanation so that tests can check what it names.
#[track_caller]
fn assert_violation(history: &[Op]) -> String {
    match check(history) {
        CheckResult::Violation { key, explanation } => {
            assert_eq!(key, history[0].key);
            explanation
        }
        r => panic!("expected a violation, got {r:#?}"),
    }
}

// ---------------------------------------------------------------- sequential

#[test]
fn sequential_history_is_linearizable() {
    assert_ok(&[
        get(1, 0, 1, None),
        set(1, 2, 3, "a"),
        get(1, 4, 5, Some("a")),
        set(2, 6, 7, "41"),
        incr(1, 8, 9, 42),
        get(2, 10, 11, Some("42")),
        del(1, 12, 13, true),
        get(1, 14, 15, None),
        incr(2, 16, 17, 1),
        del(1, 18, 19, true),
        del(1, 20, 21, false),
    ]);
}

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&[]);
}

#[test]
fn sequential_wrong_read_is_a_violation() {
    let explanation = assert_violation(&[
        set(1, 0, 1, "a"),
        set(1, 2, 3, "b"),
        get(2, 4, 5, Some("c")),
    ]);
    assert!(
        explanation.contains("#2 client 2 get -> \"c\" [call 4, ret 5]"),
        "{explanation}"
    );
    assert!(
        explanation.contains("longest linearizable prefix found: 2 ops"),
        "{explanation}"
    );
}

// ---------------------------------------------------------------- concurrency

#[test]
fn concurrent_writes_may_be_ordered_either_way() {
    // The later-called write may take effect first.
    assert_ok(&[
        set(1, 0, 10, "a"),
        set(2, 1, 10, "b"),
        get(3, 11, 12, Some("a")),
    ]);
    assert_ok(&[
        set(1, 0, 10, "a"),
        set(2, 1, 10, "b"),
        get(3, 11, 12, Some("b")),
    ]);
}

#[test]
fn reads_concurrent_with_a_write_see_old_or_new() {
    assert_ok(&[
        set(1, 0, 1, "old"),
        set(1, 10, 50, "new"),
        get(2, 11, 20, Some("new")),
        // Called after the read above returned "new", yet concurrent with the
        // write: must not see "old" (checked in the next test).
        get(3, 12, 30, Some("old")),
        get(2, 21, 40, Some("new")),
    ]);
}

#[test]
fn read_after_a_newer_read_must_not_go_back() {
    let explanation = assert_violation(&[
        set(1, 0, 1, "old"),
        set(1, 10, 50, "new"),
        get(2, 11, 20, Some("new")),
        get(3, 21, 30, Some("old")),
    ]);
    assert!(explanation.contains("[call 21, ret 30]"), "{explanation}");
}

#[test]
fn stale_read_is_a_violation() {
    let explanation = assert_violation(&[
        set(1, 0, 1, "a"),
        set(2, 2, 3, "b"),
        get(3, 4, 5, Some("a")),
    ]);
    assert!(explanation.starts_with("key \"k\""), "{explanation}");
    assert!(
        explanation.contains("value after the prefix: \"b\""),
        "{explanation}"
    );
}

#[test]
fn lost_write_is_a_violation() {
    assert_violation(&[set(1, 0, 1, "a"), get(2, 2, 3, None)]);
    assert_violation(&[incr(1, 0, 1, 1), incr(2, 2, 3, 2), get(1, 4, 5, Some("1"))]);
}

#[test]
fn equal_timestamps_are_concurrent() {
    // The read is called at the instant the write returns: either order.
    assert_ok(&[set(1, 0, 5, "a"), get(2, 5, 6, None)]);
    assert_violation(&[set(1, 0, 5, "a"), get(2, 6, 7, None)]);
}

// ---------------------------------------------------------------- INCR

#[test]
fn concurrent_incrs_apply_once_each() {
    assert_ok(&[
        incr(1, 0, 10, 2),
        incr(2, 1, 9, 1),
        get(3, 11, 12, Some("2")),
    ]);
}

#[test]
fn incr_double_applied_is_a_violation() {
    let explanation = assert_violation(&[incr(1, 0, 10, 1), incr(2, 1, 9, 1)]);
    assert!(explanation.contains("incr -> 1"), "{explanation}");
}

#[test]
fn incr_of_a_set_integer_and_of_text() {
    assert_ok(&[
        set(1, 0, 1, "-1"),
        incr(1, 2, 3, 0),
        get(1, 4, 5, Some("0")),
    ]);
    assert_violation(&[set(1, 0, 1, "abc"), incr(1, 2, 3, 1)]);
    assert_violation(&[set(1, 0, 1, &i64::MAX.to_string()), incr(1, 2, 3, i64::MIN)]);
}

#[test]
fn incr_with_unknown_result_still_counts() {
    let unknown = op(1, OpKind::Incr { result: None }, 0, Some(1));
    assert_ok(&[unknown.clone(), incr(2, 2, 3, 2)]);
    assert_violation(&[unknown, incr(2, 2, 3, 3)]);
}

// ---------------------------------------------------------------- timeouts

#[test]
fn timed_out_write_that_took_effect() {
    assert_ok(&[
        get(2, 0, 1, None),
        set_timed_out(1, 2, "a"),
        get(2, 3, 4, None),
        // Took effect long after the client gave up.
        get(2, 100, 101, Some("a")),
        get(2, 102, 103, Some("a")),
    ]);
}

#[test]
fn timed_out_write_that_did_not_take_effect() {
    assert_ok(&[
        set(1, 0, 1, "a"),
        set_timed_out(1, 2, "b"),
        get(2, 3, 4, Some("a")),
        get(2, 100, 101, Some("a")),
    ]);
}

#[test]
fn timed_out_write_takes_effect_at_most_once() {
    assert_violation(&[
        set(1, 0, 1, "a"),
        set_timed_out(1, 2, "b"),
        get(2, 3, 4, Some("b")),
        get(2, 5, 6, Some("a")),
        get(2, 7, 8, Some("b")),
    ]);
}

#[test]
fn timed_out_write_cannot_take_effect_before_its_call() {
    assert_violation(&[get(2, 0, 1, Some("a")), set_timed_out(1, 2, "a")]);
}

#[test]
fn timed_out_incr_took_effect_or_not() {
    let timed_out = op(1, OpKind::Incr { result: None }, 0, None);
    assert_ok(&[timed_out.clone(), incr(2, 5, 6, 1)]);
    assert_ok(&[timed_out.clone(), incr(2, 5, 6, 2)]);
    assert_violation(&[timed_out, incr(2, 5, 6, 3)]);
}

#[test]
fn reads_without_a_known_result_constrain_nothing() {
    let unknown = op(2, OpKind::Get { result: None }, 2, Some(3));
    let timed_out = op(
        2,
        OpKind::Get {
            result: Some(Some("zzz".into())),
        },
        2,
        None,
    );
    assert_ok(&[
        set(1, 0, 1, "a"),
        unknown,
        timed_out,
        get(1, 4, 5, Some("a")),
    ]);
}

// ---------------------------------------------------------------- CAS and DEL

#[test]
fn cas_semantics() {
    assert_ok(&[
        cas(1, 0, 1, None, "a", true),
        cas(1, 2, 3, None, "b", false),
        cas(1, 4, 5, Some("x"), "b", false),
        get(1, 6, 7, Some("a")),
        cas(1, 8, 9, Some("a"), "c", true),
        get(1, 10, 11, Some("c")),
    ]);
    // Claims a swap that could not happen, or a failure that could not.
    assert_violation(&[set(1, 0, 1, "a"), cas(1, 2, 3, Some("b"), "c", true)]);
    assert_violation(&[set(1, 0, 1, "a"), cas(1, 2, 3, Some("a"), "c", false)]);
    // A failed CAS must not write.
    assert_violation(&[cas(1, 0, 1, Some("a"), "c", false), get(1, 2, 3, Some("c"))]);
}

#[test]
fn concurrent_cas_only_one_wins() {
    assert_ok(&[
        cas(1, 0, 10, None, "a", false),
        cas(2, 1, 9, None, "b", true),
        get(3, 11, 12, Some("b")),
    ]);
    assert_violation(&[
        cas(1, 0, 10, None, "a", true),
        cas(2, 1, 9, None, "b", true),
    ]);
}

#[test]
fn del_results() {
    assert_ok(&[
        del(1, 0, 1, false),
        set(1, 2, 3, "a"),
        del(1, 4, 5, true),
        get(1, 6, 7, None),
    ]);
    assert_violation(&[del(1, 0, 1, true)]);
    assert_violation(&[set(1, 0, 1, "a"), del(1, 2, 3, false)]);
    // Two concurrent deletes of an existing key: exactly one saw it.
    assert_ok(&[set(1, 0, 1, "a"), del(1, 2, 10, true), del(2, 3, 9, false)]);
    assert_violation(&[set(1, 0, 1, "a"), del(1, 2, 10, true), del(2, 3, 9, true)]);
}

// ---------------------------------------------------------------- keys, bound

#[test]
fn keys_are_checked_independently() {
    let history = [
        on_key(set(1, 0, 1, "a"), "x"),
        on_key(set(2, 0, 1, "b"), "y"),
        // Would be stale if x and y were one register.
        on_key(get(1, 2, 3, Some("a")), "x"),
        on_key(get(2, 4, 5, Some("b")), "y"),
        on_key(get(2, 6, 7, Some("a")), "y"),
    ];
    match check(&history) {
        CheckResult::Violation { key, explanation } => {
            assert_eq!(key, "y");
            assert!(
                explanation.contains("#4 client 2 get -> \"a\""),
                "{explanation}"
            );
        }
        r => panic!("expected a violation on y, got {r:#?}"),
    }
    assert!(check(&history[..4]).is_ok());
}

#[test]
fn step_bound_gives_unknown() {
    let history: Vec<Op> = (0..20).map(|i| incr(i, 0, 100, i as i64 + 1)).collect();
    let r = check_with(&history, &Config { max_steps: 5 });
    assert_eq!(
        r,
        CheckResult::Unknown {
            key: K.to_string(),
            steps: 5
        }
    );
    assert!(check(&history).is_ok());
}

#[test]
#[should_panic(expected = "before its call")]
fn malformed_history_panics() {
    check(&[get(1, 5, 4, None)]);
}

// ---------------------------------------------------------------- randomized

struct Gen {
    keys: usize,
    clients: u64,
    ops: usize,
    /// Chance that an op times out (ret None).
    timeout: f64,
    /// Unique non-numeric values (no INCR), so that reads identify writes.
    unique: bool,
}

/// Simulates clients of a real atomic register: each op takes effect at one
/// instant between its call and its return, in that order. Timed-out ops take
/// effect later or never.
fn generate(seed: u64, g: &Gen) -> Vec<Op> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut free = vec![0u64; g.clients as usize];
    let mut history = Vec::with_capacity(g.ops);
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut written: Vec<Vec<String>> = vec![Vec::new(); g.keys];
    for i in 0..g.ops {
        let client = rng.random_range(0..g.clients);
        let key = rng.random_range(0..g.keys);
        let call = free[client as usize] + rng.random_range(0..50);
        let duration = rng.random_range(1..200);
        let timed_out = rng.random_bool(g.timeout);
        let ret = (!timed_out).then_some(call + duration);
        free[client as usize] = call + if timed_out { 300 } else { duration };
        if !timed_out {
            effects.push((call + rng.random_range(0..=duration), i));
        } else if rng.random_bool(0.5) {
            effects.push((call + rng.random_range(0..1000), i));
        }
        let value = |rng: &mut SmallRng, tag: &str| {
            if g.unique {
                format!("{tag}{i}")
            } else {
                rng.random_range(0..5).to_string()
            }
        };
        let kind = match rng.random_range(0..if g.unique { 9 } else { 10 }) {
            0..=3 => OpKind::Get { result: None },
            4 | 5 => OpKind::Set {
                value: value(&mut rng, "v"),
            },
            6 => OpKind::Del { result: None },
            7 | 8 => {
                let recent = &written[key];
                let expected = match rng.random_range(0..4) {
                    0 => None,
                    _ if recent.is_empty() => None,
                    _ => Some(
                        recent[recent.len() - rng.random_range(1..=recent.len().min(3))].clone(),
                    ),
                };
                OpKind::Cas {
                    expected,
                    new: value(&mut rng, "c"),
                    result: None,
                }
            }
            _ => OpKind::Incr { result: None },
        };
        match &kind {
            OpKind::Set { value } | OpKind::Cas { new: value, .. } => {
                written[key].push(value.clone())
            }
            _ => {}
        }
        history.push(Op {
            client,
            key: format!("key{key}"),
            kind,
            call,
            ret,
            at: None,
        });
    }
    // Apply the effects in time order and record what the clients saw.
    effects.sort_unstable();
    let mut registers: Vec<Option<String>> = vec![None; g.keys];
    for (_, i) in effects {
        let op = &mut history[i];
        let key: usize = op.key["key".len()..].parse().unwrap();
        let reg = &mut registers[key];
        let seen = op.ret.is_some();
        match &mut op.kind {
            OpKind::Get { result } => *result = Some(reg.clone()),
            OpKind::Set { value } => *reg = Some(value.clone()),
            OpKind::Incr { result } => {
                let n = reg.as_deref().map_or(0, |s| s.parse::<i64>().unwrap()) + 1;
                *reg = Some(n.to_string());
                *result = Some(n);
            }
            OpKind::Del { result } => *result = Some(reg.take().is_some()),
            OpKind::Cas {
                expected,
                new,
                result,
            } => {
                let swap = *reg == *expected;
                if swap {
                    *reg = Some(new.clone());
                }
                *result = Some(swap);
            }
            OpKind::Expire { .. } | OpKind::Ttl { .. } => unreachable!("not generated"),
        }
        if !seen {
            // The client never saw the result.
            match &mut op.kind {
                OpKind::Get { result } => *result = None,
                OpKind::Incr { result } => *result = None,
                OpKind::Del { result } | OpKind::Cas { result, .. } => *result = None,
                OpKind::Set { .. } => {}
                OpKind::Expire { .. } | OpKind::Ttl { .. } => unreachable!("not generated"),
            }
        }
    }
    history
}

/// Bounded so that a search blow-up fails the test instead of hanging it.
fn check_bounded(history: &[Op]) -> CheckResult {
    check_with(
        history,
        &Config {
            max_steps: 2_000_000,
        },
    )
}

#[test]
fn random_register_histories_are_linearizable() {
    for seed in 0..4 {
        let g = Gen {
            keys: 3,
            clients: 8,
            ops: 9000,
            timeout: 0.01,
            unique: seed % 2 == 0,
        };
        let history = generate(seed, &g);
        let start = Instant::now();
        let r = check_bounded(&history);
        eprintln!(
            "seed {seed}: {} ops on {} keys checked in {:?}",
            history.len(),
            g.keys,
            start.elapsed()
        );
        assert!(r.is_ok(), "seed {seed}: {r:#?}");
    }
}

#[test]
fn random_history_with_a_stale_read_fails() {
    let g = Gen {
        keys: 2,
        clients: 6,
        ops: 4000,
        timeout: 0.01,
        unique: true,
    };
    let mut history = generate(7, &g);
    assert!(check_bounded(&history).is_ok());
    // A read R, a write W that returned before R was called, and a SET S that
    // returned before W was called: R cannot see S's (unique) value.
    let is_write = |op: &Op| match &op.kind {
        OpKind::Set { .. } | OpKind::Del { .. } => op.ret.is_some(),
        OpKind::Cas { result, .. } => *result == Some(true),
        _ => false,
    };
    let mut corrupt = None;
    'search: for (r, read) in history.iter().enumerate().rev() {
        if !matches!(read.kind, OpKind::Get { result: Some(_) }) || read.ret.is_none() {
            continue;
        }
        for w in history.iter().filter(|w| w.key == read.key && is_write(w)) {
            if w.ret.unwrap() >= read.call {
                continue;
            }
            for s in &history {
                if let (OpKind::Set { value }, Some(s_ret)) = (&s.kind, s.ret) {
                    if s.key == read.key && s_ret < w.call {
                        corrupt = Some((r, value.clone()));
                        break 'search;
                    }
                }
            }
        }
    }
    let (r, stale) = corrupt.expect("the generator makes such triples");
    history[r].kind = OpKind::Get {
        result: Some(Some(stale)),
    };
    let start = Instant::now();
    match check_bounded(&history) {
        CheckResult::Violation { key, explanation } => {
            eprintln!("found in {:?}:\n{explanation}", start.elapsed());
            assert_eq!(key, history[r].key);
        }
        r => panic!("expected a violation, got {r:#?}"),
    }
}

#[test]
fn random_history_with_an_unwritten_read_fails() {
    let g = Gen {
        keys: 1,
        clients: 10,
        ops: 3000,
        timeout: 0.005,
        unique: false,
    };
    let mut history = generate(11, &g);
    assert!(check_bounded(&history).is_ok());
    // A completed read in the middle.
    let r = (history.len() / 2..history.len())
        .find(|&i| {
            matches!(history[i].kind, OpKind::Get { result: Some(_) }) && history[i].ret.is_some()
        })
        .unwrap();
    history[r].kind = OpKind::Get {
        result: Some(Some("never written".into())),
    };
    match check_bounded(&history) {
        CheckResult::Violation { explanation, .. } => {
            assert!(
                explanation.contains(&format!("#{r} client")),
                "{explanation}"
            );
        }
        r => panic!("expected a violation, got {r:#?}"),
    }
}

// ---------------------------------------------------------------- oracle

/// Brute force over all orders allowed by real time, on plain strings: an
/// independent statement of the same semantics.
fn brute_force(ops: &[Op]) -> bool {
    fn apply(state: &Option<String>, kind: &OpKind) -> Option<Option<String>> {
        match kind {
            OpKind::Get { result } => match result {
                Some(r) if r != state => None,
                _ => Some(state.clone()),
            },
            OpKind::Set { value } => Some(Some(value.clone())),
            OpKind::Incr { result } => {
                let n = match state {
                    None => 0,
                    Some(s) => s.parse::<i64>().ok()?,
                }
                .checked_add(1)?;
                match result {
                    Some(r) if *r != n => None,
                    _ => Some(Some(n.to_string())),
                }
            }
            OpKind::Del { result } => match result {
                Some(r) if *r != state.is_some() => None,
                _ => Some(None),
            },
            OpKind::Cas {
                expected,
                new,
                result,
            } => {
                let swap = state == expected;
                match result {
                    Some(r) if *r != swap => None,
                    _ => Some(if swap {
                        Some(new.clone())
                    } else {
                        state.clone()
                    }),
                }
            }
            OpKind::Expire { .. } | OpKind::Ttl { .. } => {
                unreachable!("the brute force has no clock")
            }
        }
    }
    fn go(ops: &[Op], left: u32, state: Option<String>) -> bool {
        let live = |i: usize| left & (1 << i) != 0;
        if (0..ops.len()).all(|i| !live(i) || ops[i].ret.is_none()) {
            // Whatever is left may never have happened.
            return true;
        }
        (0..ops.len()).filter(|&i| live(i)).any(|i| {
            let must_wait =
                (0..ops.len()).any(|p| live(p) && ops[p].ret.is_some_and(|ret| ret < ops[i].call));
            !must_wait
                && apply(&state, &ops[i].kind).is_some_and(|next| go(ops, left & !(1 << i), next))
        })
    }
    go(ops, (1 << ops.len()) - 1, None)
}

#[test]
fn agrees_with_brute_force_on_small_histories() {
    let mut rng = SmallRng::seed_from_u64(42);
    let values = ["0", "1", "x"];
    let pick = |rng: &mut SmallRng| values[rng.random_range(0..values.len())].to_string();
    let (mut ok, mut bad) = (0, 0);
    for round in 0..3000 {
        let n = rng.random_range(1..=7);
        let history: Vec<Op> = (0..n)
            .map(|_| {
                let call = rng.random_range(0..20);
                let ret = rng.random_bool(0.8).then(|| call + rng.random_range(0..8));
                let known = rng.random_bool(0.85);
                let kind = match rng.random_range(0..5) {
                    0 => OpKind::Get {
                        result: known.then(|| rng.random_bool(0.8).then(|| pick(&mut rng))),
                    },
                    1 => OpKind::Set {
                        value: pick(&mut rng),
                    },
                    2 => OpKind::Incr {
                        result: known.then(|| rng.random_range(1..=3)),
                    },
                    3 => OpKind::Del {
                        result: known.then(|| rng.random_bool(0.5)),
                    },
                    _ => OpKind::Cas {
                        expected: rng.random_bool(0.7).then(|| pick(&mut rng)),
                        new: pick(&mut rng),
                        result: known.then(|| rng.random_bool(0.5)),
                    },
                };
                Op {
                    client: rng.random_range(0..3),
                    key: K.to_string(),
                    kind,
                    call,
                    ret,
                    at: None,
                }
            })
            .collect();
        let expected = brute_force(&history);
        let got = check(&history);
        assert!(
            !matches!(got, CheckResult::Unknown { .. }),
            "round {round}: {got:?}"
        );
        assert_eq!(
            got.is_ok(),
            expected,
            "round {round}: {history:#?}\n{got:#?}"
        );
        if expected { ok += 1 } else { bad += 1 }
    }
    // Both outcomes are exercised.
    assert!(ok > 300 && bad > 300, "ok {ok}, bad {bad}");
}

// ---------------------------------------------------------------- cluster time

fn timed(mut op: Op, at: u64) -> Op {
    op.at = Some(at);
    op
}

fn expire(client: u64, call: u64, ret: u64, seconds: u64, existed: bool) -> Op {
    let kind = OpKind::Expire {
        seconds,
        result: Some(existed),
    };
    op(client, kind, call, Some(ret))
}

fn ttl(client: u64, call: u64, ret: u64, seen: TtlSeen) -> Op {
    op(client, OpKind::Ttl { result: Some(seen) }, call, Some(ret))
}

#[test]
fn a_key_expires_at_its_deadline_in_cluster_time() {
    let h = [
        timed(set(0, 0, 1, "v"), 100),
        timed(expire(0, 2, 3, 2, true), 1_000), // deadline 3_000
        timed(ttl(1, 4, 5, TtlSeen::Seconds(2)), 1_001),
        timed(get(1, 6, 7, Some("v")), 2_999),
        timed(ttl(1, 8, 9, TtlSeen::Missing), 3_000),
        timed(get(1, 10, 11, None), 3_000),
        // INCR on the expired key starts from 0.
        timed(incr(0, 12, 13, 1), 3_500),
        timed(ttl(1, 14, 15, TtlSeen::NoExpiry), 3_600),
    ];
    assert_ok(&h);
}

#[test]
fn a_key_read_before_its_deadline_after_expiry_is_a_violation() {
    let h = [
        timed(set(0, 0, 1, "v"), 100),
        timed(expire(0, 2, 3, 1, true), 1_000),
        timed(get(1, 4, 5, Some("v")), 2_000),
    ];
    assert_violation(&h);
    // The TTL must match the deadline, rounded up.
    let h = [
        timed(set(0, 0, 1, "v"), 100),
        timed(expire(0, 2, 3, 5, true), 1_000),
        timed(ttl(1, 4, 5, TtlSeen::Seconds(5)), 2_000),
    ];
    assert_violation(&h);
}

/// What expiry on the serving node's own clock looks like: a key gone on one
/// leader is back on the next (the second node evaluated it at an earlier
/// cluster time).
#[test]
fn cluster_time_running_backwards_is_a_violation() {
    let h = [
        timed(set(0, 0, 1, "v"), 100),
        timed(expire(0, 2, 3, 1, true), 1_000),
        timed(get(1, 4, 5, None), 2_500),
        timed(get(1, 6, 7, Some("v")), 1_500),
    ];
    assert_violation(&h);
    // Concurrent reads may be ordered either way.
    let h = [
        timed(set(0, 0, 1, "v"), 100),
        timed(expire(0, 2, 3, 1, true), 1_000),
        timed(get(1, 4, 7, None), 2_500),
        timed(get(2, 5, 8, Some("v")), 1_500),
    ];
    assert_ok(&h);
}

#[test]
fn an_expire_of_unknown_outcome_may_or_may_not_have_applied() {
    let mut pending = expire(0, 2, 3, 1, true);
    pending.ret = None;
    pending.kind = OpKind::Expire {
        seconds: 1,
        result: None,
    };
    for seen in [Some("v"), None] {
        let h = [
            timed(set(0, 0, 1, "v"), 100),
            timed(pending.clone(), 1_000),
            timed(get(1, 4, 5, seen), 2_500),
        ];
        assert_ok(&h);
    }
}
