//! A seeded randomized check against a naive model, with a second replica
//! that is rebuilt from snapshots along the way and retried requests.

use super::*;
use crate::kv::SESSION_TIMEOUT_MS;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The obvious specification: a map scanned for expiry at every step.
#[derive(Default)]
struct Model {
    time: u64,
    data: BTreeMap<String, (String, Option<u64>)>,
}

impl Model {
    fn live(&mut self, key: &str) -> Option<String> {
        let expired = matches!(self.data.get(key), Some((_, Some(d))) if *d <= self.time);
        if expired {
            self.data.remove(key);
        }
        self.data.get(key).map(|(v, _)| v.clone())
    }

    /// The expected outcome of `op` (shape only: value or flag).
    fn apply(&mut self, op: &Op) -> String {
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
        match op {
            Op::Set(c) => {
                self.data.insert(text(&c.key), (text(&c.value), None));
                "set".into()
            }
            Op::Del(c) => {
                let existed = self.live(&text(&c.key)).is_some();
                self.data.remove(&text(&c.key));
                format!("del {existed}")
            }
            Op::Incr(c) => {
                let key = text(&c.key);
                let (n, deadline) = match self.live(&key) {
                    None => (0, None),
                    Some(v) => match v.parse::<i64>() {
                        Ok(n) => (n, self.data[&key].1),
                        Err(_) => return "NotAnInteger".into(),
                    },
                };
                self.data.insert(key, ((n + 1).to_string(), deadline));
                format!("incr {}", n + 1)
            }
            Op::Expire(c) => {
                let key = text(&c.key);
                let Some(v) = self.live(&key) else {
                    return "expire false".into();
                };
                if c.seconds == 0 {
                    self.data.remove(&key);
                } else {
                    self.data
                        .insert(key, (v, Some(self.time + c.seconds * 1000)));
                }
                "expire true".into()
            }
            Op::Cas(c) => {
                let key = text(&c.key);
                let current = self.live(&key);
                if current == c.expected.as_ref().map(text) {
                    self.data.insert(key, (text(&c.value), None));
                    format!("cas true {:?}", Some(text(&c.value)))
                } else {
                    format!("cas false {current:?}")
                }
            }
            Op::Register(_)
            | Op::MemberAddrs(_)
            | Op::StateCheck(_)
            | Op::StateReport(_)
            | Op::Auth(_) => {
                unreachable!()
            }
        }
    }
}

fn shape(r: &WriteResponse) -> String {
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    match r.result.as_ref().unwrap() {
        Outcome::Set(_) => "set".into(),
        Outcome::Del(d) => format!("del {}", d.existed),
        Outcome::Incr(i) => format!("incr {}", i.value),
        Outcome::Expire(e) => format!("expire {}", e.applied),
        Outcome::Cas(c) => format!("cas {} {:?}", c.swapped, c.current.as_ref().map(text)),
        Outcome::Error(e) => format!("{:?}", e.code()),
        Outcome::Register(_) => "register".into(),
        Outcome::MemberAddrs(_) => "member addrs".into(),
        Outcome::Change(_) => "change".into(),
        Outcome::StateCheck(_) => "state check".into(),
        Outcome::StateReport(_) => "state report".into(),
        Outcome::Auth(_) => "auth".into(),
    }
}

fn random_op(rng: &mut SmallRng) -> Op {
    let key = format!("k{}", rng.random_range(0..6));
    let value = |rng: &mut SmallRng| match rng.random_range(0..3) {
        0 => "text".to_string(),
        _ => rng.random_range(-3..4).to_string(),
    };
    match rng.random_range(0..6) {
        0 => set(&key, &value(rng)),
        1 => del(&key),
        2 | 3 => incr(&key),
        4 => expire(&key, rng.random_range(0..4)),
        _ => {
            let expected = match rng.random_range(0..3) {
                0 => None,
                _ => Some(value(rng)),
            };
            cas(&key, expected.as_deref(), &value(rng))
        }
    }
}

#[test]
fn random_histories_match_the_model_and_replicas_agree() {
    for seed in 0..24 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut model = Model::default();
        let mut a = Harness::new();
        let mut b = Harness::new();
        let mut stamp: u64 = 1_000;
        let client = a.register(stamp);
        assert_eq!(b.register(stamp), client);
        // Answers of this client's requests, for checking retries.
        let mut answers: BTreeMap<u64, WriteResponse> = BTreeMap::new();
        let mut next_seq = 1;
        for step in 0..300 {
            // Leaders' clocks drift: stamps mostly advance, sometimes go back.
            stamp = (stamp + rng.random_range(0..900)).saturating_sub(rng.random_range(0..400));
            model.time = model.time.max(stamp);
            let (bytes, got) = if !answers.is_empty() && rng.random_bool(0.2) {
                // A retry of an earlier request: must get the same answer.
                let seqs: Vec<u64> = answers.keys().copied().collect();
                let seq = seqs[rng.random_range(0..seqs.len())];
                let session = Session {
                    client_id: client,
                    seq,
                    first_incomplete: seqs[0],
                };
                let bytes = encode(Some(session), stamp, incr("k0"));
                let got = a.apply_raw(&bytes);
                assert_eq!(got, answers[&seq], "seed {seed} step {step} retry");
                (bytes, got)
            } else {
                let op = random_op(&mut rng);
                let session = rng.random_bool(0.5).then(|| Session {
                    client_id: client,
                    seq: next_seq,
                    first_incomplete: answers.keys().next().copied().unwrap_or(next_seq),
                });
                let want = model.apply(&op);
                let bytes = encode(session, stamp, op);
                let got = a.apply_raw(&bytes);
                assert_eq!(shape(&got), want, "seed {seed} step {step}");
                if session.is_some() {
                    answers.insert(next_seq, got.clone());
                    next_seq += 1;
                    // The client acknowledges old answers now and then.
                    while answers.len() > 4 {
                        answers.pop_first();
                    }
                }
                (bytes, got)
            };
            assert_eq!(b.apply_raw(&bytes), got, "seed {seed} step {step} replica");
            for k in 0..6 {
                let key = format!("k{k}");
                assert_eq!(
                    a.get(&key, 0),
                    model.live(&key),
                    "seed {seed} step {step} {key}"
                );
            }
            if rng.random_bool(0.05) {
                b.sm = StateMachine::restore(Limits::default(), &b.sm.snapshot()).unwrap();
            }
        }
        assert_eq!(a.sm, b.sm, "seed {seed}");
        assert_eq!(a.sm.snapshot(), b.sm.snapshot(), "seed {seed}");
    }
}

/// Random histories of many clients under small session bounds: registers
/// beyond the cap (evicting holders of answers), writes with large answers
/// crossing the byte bounds, retries, acknowledgements, idle expiry, and a
/// second replica rebuilt from a snapshot at random points. The harness
/// checks the invariants after every entry; the replicas must stay equal.
#[test]
fn random_session_histories_keep_the_invariants_and_replicas_agree() {
    let limits = Limits {
        max_sessions: 4,
        max_kept_bytes_per_client: 2_000,
        max_kept_bytes: 5_000,
        ..Limits::default()
    };
    for seed in 0..64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut one = Harness::with_limits(limits);
        let mut two = Harness::with_limits(limits);
        let mut stamp: u64 = 0;
        // Per client: next seq and the lowest seq not yet acknowledged.
        let mut clients: Vec<(u64, u64, u64)> = Vec::new();
        for step in 0..400 {
            stamp += match rng.random_range(0..50) {
                0 => SESSION_TIMEOUT_MS / 2,
                _ => rng.random_range(0..1_000),
            };
            let bytes = if clients.is_empty() || rng.random_bool(0.15) {
                encode(None, stamp, register())
            } else {
                let i = rng.random_range(0..clients.len());
                let (id, next, acked) = &mut clients[i];
                if rng.random_bool(0.2) {
                    *acked = rng.random_range(*acked..=*next);
                }
                let seq = if rng.random_bool(0.2) && *next > 1 {
                    rng.random_range(1..*next) // a retry, maybe long forgotten
                } else {
                    *next += 1;
                    *next - 1
                };
                let session = Session {
                    client_id: *id,
                    seq,
                    first_incomplete: (*acked).min(seq),
                };
                let len = rng.random_range(1..1_200);
                let op = match rng.random_range(0..5) {
                    0 => incr("n"),
                    1 => expire("big", rng.random_range(0..3)),
                    2 => Op::Set(SetCmd {
                        key: b("big"),
                        value: Bytes::from(vec![b'v'; len]),
                    }),
                    _ => cas_absent_big(),
                };
                encode(Some(session), stamp, op)
            };
            let got = one.apply_raw(&bytes);
            if let Some(Outcome::Register(r)) = &got.result {
                clients.push((r.client_id, 1, 1));
            }
            assert_eq!(two.apply_raw(&bytes), got, "seed {seed} step {step}");
            if rng.random_bool(0.05) {
                two.sm = StateMachine::restore(limits, &two.sm.snapshot()).unwrap();
                assert_eq!(one.sm, two.sm, "seed {seed} step {step} restored");
            }
            assert_eq!(one.sm.state_hash(), two.sm.state_hash());
        }
        assert_eq!(one.sm, two.sm, "seed {seed}");
    }
}

/// A CAS that expects `big` absent: while it exists the CAS fails and its
/// answer carries the whole current value.
fn cas_absent_big() -> Op {
    Op::Cas(CasCmd {
        key: b("big"),
        expected: None,
        value: b("small"),
    })
}
