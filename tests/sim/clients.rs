//! The simulated clients and the door into each node: requests go through
//! the product's own `replica` layer (the one the tokio node loop uses), and
//! its effects come back as answers, in the order the product gives them.
//!
//! Each random client opens a session (`RegisterSession`) and sends every
//! write with `(client_id, seq, first_incomplete)`, retrying an unanswered
//! or outcome-unknown request with the same sequence number, as the real
//! client does: exactly-once comes from the state machine's session table.
//! Clients now and then start afresh with a new session; the state machines
//! keep only `SESSION_CAP` sessions, so older ones, active ones included,
//! are evicted and answered `SESSION_EXPIRED`, which the client records as
//! an outcome it does not know. Every op records the cluster time the
//! product evaluated it at, for the checker's expiry model.

use super::*;
use crate::linearizability::TtlSeen;
use raftkv::pb::command::Op as PbOp;
use raftkv::pb::kv_error::Code;
use raftkv::pb::write_response::Result as Reply;
use raftkv::pb::{self, Session};
use raftkv::replica::{Callers, Effect, ReadAnswer, ReadKind, Refusal};

pub(super) const KEYS: [&str; 3] = ["a", "b", "c"];
/// Sessions each state machine keeps: fewer than the clients that come and
/// go, so eviction happens in every run.
pub(super) const SESSION_CAP: usize = 3;
/// Chance that a client starts afresh (a new process) before an op.
const FRESH_START: f64 = 0.03;

/// A write command of the workload.
#[derive(Clone, Debug)]
pub enum Cmd {
    Set(String, String),
    Del(String),
    Incr(String),
    Expire(String, u64),
    /// key, expected (None: absent), new value
    Cas(String, Option<String>, String),
}

/// What a client asks for.
#[derive(Clone, Debug)]
pub enum Call {
    Get(String),
    Ttl(String),
    Write(Cmd),
    /// Open a session (not an op of the history).
    Register,
    /// A membership change through the client's session, as `raftctl
    /// member` sends it (not an op of the history: its answer is kept in
    /// `Client::changed`).
    Change(ConfChange),
}

/// The simulator's callers: (client, attempt).
pub(super) struct Sim;

impl Callers for Sim {
    type Write = (usize, u64);
    /// None: proposed by the script itself (`Action::Change`).
    type Change = Option<(usize, u64)>;
    type Read = (usize, u64);
    type Transfer = ();
}

#[derive(Clone, Debug)]
pub(super) enum ClientMsg {
    Write {
        client: usize,
        attempt: u64,
        req: pb::WriteRequest,
    },
    Read {
        client: usize,
        attempt: u64,
        kind: ReadKind,
    },
    Change {
        client: usize,
        attempt: u64,
        change: ConfChange,
        context: pb::ChangeContext,
    },
}

#[derive(Clone, Debug)]
pub(super) enum Answer {
    Written(pb::WriteResponse),
    /// The answer and the cluster time it was evaluated at.
    Read(ReadAnswer, u64),
    Redirect(Option<NodeId>),
    /// Proposed, outcome unknown: retry the same request.
    Unknown,
    /// A membership change's final answer: its index, or why it was refused.
    Changed(Result<u64, String>),
}

pub(super) struct PendingOp {
    /// Its op in the history; None for a registration.
    op_index: Option<usize>,
    pub(super) attempt: u64,
    msg: ClientMsg,
    target: NodeId,
}

#[derive(Default)]
pub(super) struct Client {
    session: Option<u64>,
    seq: u64,
    /// Attempts are numbered across all operations, so a late answer to an
    /// earlier operation can never be taken for the current one's.
    attempts: u64,
    pub(super) pending: Option<PendingOp>,
    leader_guess: Option<NodeId>,
    counter: u64,
    /// The value last seen per key (what a CAS expects).
    seen: BTreeMap<String, Option<String>>,
    /// The final answer to the client's last membership change.
    pub(super) changed: Option<Result<u64, String>>,
}

impl Client {
    /// The session header of the client's next request (`None` before it
    /// registered). One request is in flight at a time, so every earlier
    /// one was answered: the new one is also the first incomplete.
    fn next_session(&mut self) -> Option<Session> {
        self.seq += 1;
        let seq = self.seq;
        self.session.map(|client_id| Session {
            client_id,
            seq,
            first_incomplete: seq,
        })
    }
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).expect("the workload writes text")
}

impl Cmd {
    fn key(&self) -> &str {
        match self {
            Cmd::Set(k, _) | Cmd::Del(k) | Cmd::Incr(k) | Cmd::Expire(k, _) | Cmd::Cas(k, _, _) => {
                k
            }
        }
    }

    fn history_kind(&self) -> OpKind {
        match self {
            Cmd::Set(_, v) => OpKind::Set { value: v.clone() },
            Cmd::Del(_) => OpKind::Del { result: None },
            Cmd::Incr(_) => OpKind::Incr { result: None },
            Cmd::Expire(_, seconds) => OpKind::Expire {
                seconds: *seconds,
                result: None,
            },
            Cmd::Cas(_, expected, new) => OpKind::Cas {
                expected: expected.clone(),
                new: new.clone(),
                result: None,
            },
        }
    }

    fn to_pb(&self) -> PbOp {
        match self.clone() {
            Cmd::Set(k, v) => PbOp::Set(pb::SetCmd {
                key: bytes(&k),
                value: bytes(&v),
            }),
            Cmd::Del(k) => PbOp::Del(pb::DelCmd { key: bytes(&k) }),
            Cmd::Incr(k) => PbOp::Incr(pb::IncrCmd { key: bytes(&k) }),
            Cmd::Expire(k, seconds) => PbOp::Expire(pb::ExpireCmd {
                key: bytes(&k),
                seconds,
            }),
            Cmd::Cas(k, expected, new) => PbOp::Cas(pb::CasCmd {
                key: bytes(&k),
                expected: expected.map(|e| bytes(&e)),
                value: bytes(&new),
            }),
        }
    }
}

/// The name an op is counted under in the stats.
pub(super) fn command_name(kind: &OpKind) -> &'static str {
    match kind {
        OpKind::Get { .. } => "GET",
        OpKind::Set { .. } => "SET",
        OpKind::Incr { .. } => "INCR",
        OpKind::Del { .. } => "DEL",
        OpKind::Cas { .. } => "CAS",
        OpKind::Expire { .. } => "EXPIRE",
        OpKind::Ttl { .. } => "TTL",
    }
}

impl World {
    pub(super) fn client_next(&mut self, c: usize) {
        if !self.clients_on || self.clients[c].pending.is_some() {
            return;
        }
        let target = self.clients[c]
            .leader_guess
            .unwrap_or(NodeId(self.rng.random_range(0..self.nodes.len() as u64)));
        if self.rng.random_bool(FRESH_START) {
            // A new process: the old session lingers until evicted.
            self.clients[c].session = None;
        }
        if self.clients[c].session.is_none() {
            return self.call(c, target, Call::Register);
        }
        let key = KEYS[self.rng.random_range(0..KEYS.len())].to_string();
        let call = match self.rng.random_range(0..100) {
            0..25 => Call::Get(key),
            25..35 => Call::Ttl(key),
            35..50 => Call::Write(Cmd::Set(key, self.fresh_value(c))),
            50..65 => Call::Write(Cmd::Incr(key)),
            65..73 => Call::Write(Cmd::Del(key)),
            73..85 => {
                let seconds = [0, 1, 1, 1, 2, 2, 3][self.rng.random_range(0..7)];
                Call::Write(Cmd::Expire(key, seconds))
            }
            _ => {
                let expected = if self.rng.random_bool(0.7) {
                    self.clients[c].seen.get(&key).cloned().flatten()
                } else if self.rng.random_bool(0.5) {
                    None
                } else {
                    Some(self.fresh_value(c))
                };
                Call::Write(Cmd::Cas(key, expected, self.fresh_value(c)))
            }
        };
        self.call(c, target, call);
    }

    /// A value no one wrote before; an integer, so INCR on it is defined.
    fn fresh_value(&mut self, c: usize) -> String {
        let client = &mut self.clients[c];
        client.counter += 1;
        ((c as u64 + 1) * 1_000_000 + client.counter).to_string()
    }

    /// Client `c` starts an operation: into the history, then to `target`.
    pub(super) fn call(&mut self, c: usize, target: NodeId, call: Call) {
        let op = |key: &str, kind| Op {
            client: c as u64,
            key: key.to_string(),
            kind,
            call: self.now,
            ret: None,
            at: None,
        };
        let (op, session, msg) = match call {
            Call::Get(key) => (
                Some(op(&key, OpKind::Get { result: None })),
                None,
                ClientMsg::Read {
                    client: c,
                    attempt: 0,
                    kind: ReadKind::Get(bytes(&key)),
                },
            ),
            Call::Ttl(key) => (
                Some(op(&key, OpKind::Ttl { result: None })),
                None,
                ClientMsg::Read {
                    client: c,
                    attempt: 0,
                    kind: ReadKind::Ttl(bytes(&key)),
                },
            ),
            Call::Register => {
                let req = pb::WriteRequest {
                    session: None,
                    command: Some(pb::Command {
                        op: Some(PbOp::Register(pb::RegisterSession {})),
                    }),
                };
                let msg = ClientMsg::Write {
                    client: c,
                    attempt: 0,
                    req,
                };
                (None, None, msg)
            }
            Call::Change(change) => {
                let context = pb::ChangeContext {
                    session: self.clients[c].next_session(),
                    user: String::new(),
                };
                let msg = ClientMsg::Change {
                    client: c,
                    attempt: 0,
                    change,
                    context,
                };
                (None, None, msg)
            }
            Call::Write(cmd) => {
                let session = self.clients[c].next_session();
                let key = session.as_ref().map(|s| (s.client_id, s.seq));
                let req = pb::WriteRequest {
                    session,
                    command: Some(pb::Command {
                        op: Some(cmd.to_pb()),
                    }),
                };
                let msg = ClientMsg::Write {
                    client: c,
                    attempt: 0,
                    req,
                };
                (Some(op(cmd.key(), cmd.history_kind())), key, msg)
            }
        };
        let op_index = op.map(|op| {
            self.history.push(op);
            self.op_sessions.push(session);
            self.history.len() - 1
        });
        let client = &mut self.clients[c];
        client.attempts += 1;
        client.pending = Some(PendingOp {
            op_index,
            attempt: client.attempts,
            msg,
            target,
        });
        self.client_send(c);
    }

    fn client_send(&mut self, c: usize) {
        let p = self.clients[c].pending.as_mut().expect("pending");
        let attempt = p.attempt;
        match &mut p.msg {
            ClientMsg::Write { attempt: a, .. }
            | ClientMsg::Read { attempt: a, .. }
            | ClientMsg::Change { attempt: a, .. } => *a = attempt,
        }
        let (msg, target) = (p.msg.clone(), p.target);
        let d = self.net_delay();
        self.schedule(d, Ev::ToNode(target, msg));
        if !self.scripted_clients {
            self.schedule(400 * MS, Ev::ClientTimeout(c, attempt));
        }
    }

    pub(super) fn client_retry(&mut self, c: usize, hint: Option<NodeId>) {
        let n = self.nodes.len() as u64;
        let random = NodeId(self.rng.random_range(0..n));
        let client = &mut self.clients[c];
        client.leader_guess = hint;
        client.attempts += 1;
        let p = client.pending.as_mut().expect("pending");
        p.attempt = client.attempts;
        p.target = hint.unwrap_or(random);
        self.client_send(c);
    }

    pub(super) fn client_answer(&mut self, c: usize, attempt: u64, answer: Answer) {
        let Some(p) = &self.clients[c].pending else {
            return;
        };
        if p.attempt != attempt {
            return;
        }
        let (target, op_index) = (p.target, p.op_index);
        if self.scripted_clients {
            self.log(format!("client {c}: n{target} answers {answer:?}"));
        }
        match answer {
            // A scripted client sends once: unanswered, the history keeps
            // the op as "may have taken effect".
            Answer::Redirect(_) | Answer::Unknown if self.scripted_clients => {
                self.clients[c].pending = None;
            }
            Answer::Redirect(hint) => {
                let hint = hint.filter(|h| *h != target);
                self.client_retry(c, hint);
            }
            Answer::Unknown => self.client_retry(c, Some(target)),
            Answer::Changed(result) => {
                self.clients[c].changed = Some(result);
                self.finish(c, target);
            }
            Answer::Written(response) => match op_index {
                None => self.registered(c, target, response),
                Some(i) => self.written(c, target, i, response),
            },
            Answer::Read(answer, at) => {
                let i = op_index.expect("a read is an op");
                let lag = (self.now / MS).saturating_sub(at);
                self.stats.max_read_lag_ms = self.stats.max_read_lag_ms.max(lag);
                let op = &mut self.history[i];
                op.ret = Some(self.now);
                op.at = Some(at);
                match answer {
                    ReadAnswer::Get(g) => {
                        let value = g.found.then(|| text(&g.value));
                        op.kind = OpKind::Get {
                            result: Some(value.clone()),
                        };
                        let key = op.key.clone();
                        self.clients[c].seen.insert(key, value);
                    }
                    ReadAnswer::Ttl(t) => {
                        let seen = match (t.found, t.seconds) {
                            (false, _) => TtlSeen::Missing,
                            (true, None) => TtlSeen::NoExpiry,
                            (true, Some(s)) => TtlSeen::Seconds(s),
                        };
                        op.kind = OpKind::Ttl { result: Some(seen) };
                    }
                    ReadAnswer::Range(_) => unreachable!("the simulated clients read no ranges"),
                    ReadAnswer::State(_) => unreachable!("the simulated clients take no backups"),
                }
                self.finish(c, target);
            }
        }
    }

    fn registered(&mut self, c: usize, target: NodeId, response: pb::WriteResponse) {
        match response.result {
            Some(Reply::Register(r)) => {
                let client = &mut self.clients[c];
                client.session = Some(r.client_id);
                client.seq = 0;
                self.finish(c, target);
            }
            other => panic!("client {c}: registration answered {other:?}"),
        }
    }

    fn written(&mut self, c: usize, target: NodeId, i: usize, response: pb::WriteResponse) {
        let outcome = response.result.expect("an answer has a result");
        if let Reply::Error(e) = &outcome {
            assert_eq!(e.code(), Code::SessionExpired, "client {c}: refused: {e:?}");
            // Evicted: whether an earlier attempt took effect is unknown.
            self.stats.session_expired += 1;
            self.clients[c].session = None;
            return self.finish(c, target);
        }
        // A retry answered from its session reports where it was applied.
        let at = self.cluster_time_at(response.index);
        let op = &mut self.history[i];
        op.ret = Some(self.now);
        op.at = Some(at);
        let key = op.key.clone();
        let seen = match (&mut op.kind, outcome) {
            (OpKind::Set { value }, Reply::Set(_)) => Some(Some(value.clone())),
            (OpKind::Del { result }, Reply::Del(r)) => {
                *result = Some(r.existed);
                Some(None)
            }
            (OpKind::Incr { result }, Reply::Incr(r)) => {
                *result = Some(r.value);
                Some(Some(r.value.to_string()))
            }
            (OpKind::Expire { result, .. }, Reply::Expire(r)) => {
                *result = Some(r.applied);
                None
            }
            (OpKind::Cas { result, .. }, Reply::Cas(r)) => {
                *result = Some(r.swapped);
                Some(r.current.as_ref().map(text))
            }
            (kind, outcome) => panic!("client {c}: {kind:?} answered {outcome:?}"),
        };
        if let Some(seen) = seen {
            self.clients[c].seen.insert(key, seen);
        }
        self.finish(c, target);
    }

    fn finish(&mut self, c: usize, leader: NodeId) {
        self.clients[c].pending = None;
        self.clients[c].leader_guess = Some(leader);
        let d = self.rng.random_range(0..20) * MS;
        self.schedule(d, Ev::ClientNext(c));
    }

    fn reply(&mut self, client: usize, attempt: u64, answer: Answer) {
        let d = self.net_delay();
        self.schedule(d, Ev::ToClient(client, attempt, answer));
    }

    /// A client's request reaches node `id`: into its replica, as in the
    /// node loop.
    pub(super) fn client_request(&mut self, id: NodeId, msg: ClientMsg) -> Outcome {
        if self.nodes[&id].replica.is_none() {
            return Ok(());
        }
        if self.nodes[&id].busy_until > self.now {
            let t = self.nodes[&id].busy_until - self.now;
            self.schedule(t, Ev::ToNode(id, msg));
            return Ok(());
        }
        self.note_step(id);
        let local = self.local(id);
        let replica = self.replica(id);
        match msg {
            ClientMsg::Write {
                client,
                attempt,
                req,
            } => replica.propose_write(req, (client, attempt), local),
            ClientMsg::Read {
                client,
                attempt,
                kind,
            } => replica.read(kind, (client, attempt), local),
            ClientMsg::Change {
                client,
                attempt,
                change,
                context,
            } => replica.propose_change(change, Some(context), Some((client, attempt)), local),
        }
        self.deliver(id);
        self.after_input(id)
    }

    /// Carries out node `id`'s effects: answers travel back to the clients.
    pub(super) fn deliver(&mut self, id: NodeId) {
        let effects = self.replica(id).take_effects();
        for effect in effects {
            let ((client, attempt), answer) = match effect {
                Effect::Written { caller, result, .. } => (caller, written_answer(result)),
                Effect::Scan {
                    caller,
                    scan,
                    cluster_ms,
                } => (caller, Answer::Read(scan.run(), cluster_ms)),
                Effect::Read {
                    caller,
                    result,
                    cluster_ms,
                } => {
                    let answer = match result {
                        Ok(a) => Answer::Read(a, cluster_ms),
                        Err(Refusal::NotLeader(hint)) => Answer::Redirect(hint),
                        Err(_) => Answer::Redirect(None),
                    };
                    (caller, answer)
                }
                Effect::Changed { caller, result } => {
                    self.log(format!("n{id} membership change answered {result:?}"));
                    let Some(caller) = caller else {
                        continue;
                    };
                    (caller, changed_answer(result))
                }
                Effect::Transferred { result, .. } => {
                    self.log(format!("n{id} transfer answered {result:?}"));
                    continue;
                }
                Effect::MembersChanged => continue,
                Effect::HashState { index, state } => {
                    // Hashed on another thread in the node: it comes back
                    // a little later, maybe after the leader's report.
                    let hash = state.state_hash();
                    let inc = self.nodes[&id].incarnation;
                    let delay = self.rng.random_range(0..30) * MS;
                    self.schedule(delay, Ev::Hashed(id, inc, index, hash));
                    continue;
                }
                Effect::StateCompared(c) => {
                    self.stats.state_reports_compared += 1;
                    if !c.equal {
                        self.diverged.push(format!(
                            "n{id}'s state check at index {} hashed {:016x}, n{} reported {:016x}",
                            c.index, c.ours, c.reporter, c.theirs
                        ));
                    }
                    continue;
                }
            };
            self.reply(client, attempt, answer);
        }
    }
}

fn changed_answer(result: Result<u64, Refusal>) -> Answer {
    match result {
        Ok(index) => Answer::Changed(Ok(index)),
        Err(Refusal::NotLeader(hint)) => Answer::Redirect(hint),
        Err(Refusal::OutcomeUnknown(_)) => Answer::Unknown,
        Err(Refusal::Busy(_) | Refusal::Stopping) => Answer::Redirect(None),
        Err(Refusal::Rejected(e)) => Answer::Changed(Err(e.message)),
        Err(r @ (Refusal::Invalid(_) | Refusal::LearnerBehind(_))) => {
            Answer::Changed(Err(format!("{r:?}")))
        }
    }
}

fn written_answer(result: Result<pb::WriteResponse, Refusal>) -> Answer {
    match result {
        Ok(r) => Answer::Written(r),
        Err(Refusal::NotLeader(hint)) => Answer::Redirect(hint),
        Err(Refusal::OutcomeUnknown(_)) => Answer::Unknown,
        Err(Refusal::Busy(_) | Refusal::Stopping) => Answer::Redirect(None),
        Err(r @ (Refusal::Invalid(_) | Refusal::Rejected(_) | Refusal::LearnerBehind(_))) => {
            panic!("the workload's write was refused: {r:?}")
        }
    }
}
