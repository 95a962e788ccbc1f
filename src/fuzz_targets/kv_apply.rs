//! The `kv_apply` target: client commands applied to the state machine
//! through the path a node takes for a committed entry.

use crate::kv::{Limits, SESSION_TIMEOUT_MS, StateMachine};
use crate::pb::{self, command::Op, write_response::Result as Outcome};
use crate::raft::Payload;
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use prost::Message as _;

/// Steps taken from one input at most.
const MAX_STEPS: usize = 512;

/// Two replicas that apply the same entries stay equal and valid.
///
/// Input (decoded with `arbitrary`): steps, each a log entry (a client
/// command with or without a session, a command on behalf of a user, a
/// change of users and roles, a session registration, a state
/// check or report, a member's addresses, a time entry, a no-op, raw
/// bytes as a proposal), a read, a retry of an applied index, or a
/// snapshot of one replica restored in place of the other. Every entry is
/// encoded as the leader does (`pb::Proposal` in a `pb::Entry`), decoded
/// as a follower does (`storage::entry_from_pb`), and its command applied
/// with `StateMachine::apply`, as the replica does, to both replicas,
/// under small session and answer bounds so that evictions happen. What
/// must hold after every step: no panic, `check_invariants` on both, the
/// same answer from both and the same `state_hash`; a replica restored from
/// the other's snapshot has the same hash and state; an index applied
/// again is refused and changes nothing.
pub fn kv_apply(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let limits = super::small_limits();
    let mut run = Run {
        limits,
        one: StateMachine::new(limits),
        two: StateMachine::new(limits),
        index: 0,
        stamp: 0,
        clients: Vec::new(),
    };
    super::each(&mut u, MAX_STEPS, |step| {
        run.step(step);
        run.check();
    });
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A client command, with a session (of the `client`-th registered
    /// client, if any) unless `client` is 0.
    Write {
        client: u8,
        /// How far back from the client's next sequence number: 0 is a new
        /// request, more a retry.
        back: u8,
        /// How many requests below it the client acknowledges.
        ack: u8,
        op: Cmd,
    },
    /// A session carried as given, whatever the client has done.
    WriteAs {
        client_id: u64,
        seq: u64,
        first_incomplete: u64,
        op: Cmd,
    },
    Register,
    /// A command without a session on behalf of a user (a few names, or
    /// nobody), checked against the auth store when applied.
    WriteBy {
        user: Option<u8>,
        op: Cmd,
    },
    /// A time entry (a proposal without a command).
    Time(Advance),
    /// The leader's no-op or a membership entry: an index the state
    /// machine never sees.
    Noop,
    /// Any bytes as the proposal of a command entry.
    Raw(Vec<u8>),
    Get(Key),
    Ttl(Key),
    /// An entry applied a second time.
    Again,
    /// A snapshot of one replica (`true`: the second) restored in place of
    /// the other.
    Snapshot(bool),
    /// Cluster time moves on with the next entry.
    Clock(Advance),
}

#[derive(Arbitrary, Debug)]
enum Cmd {
    Set(Key, Value),
    Del(Key),
    Incr(Key),
    Expire(Key, Seconds),
    Cas(Key, Option<Value>, Value),
    StateCheck,
    StateReport(u64, u64, u8),
    MemberAddrs(u8, String),
    /// A command without an operation.
    Empty,
    /// A change of users, roles or auth (names from a few, so they meet).
    Auth(AuthStep),
}

#[derive(Arbitrary, Debug)]
enum AuthStep {
    UserAdd(u8),
    UserDelete(u8),
    UserGrant(u8, u8),
    UserRevoke(u8, u8),
    RoleAdd(u8),
    RoleDelete(u8),
    RoleGrant(u8, Key, u8),
    RoleRevoke(u8, Key),
    Enable,
    Disable,
}

/// A few names: `root` (the built-in role and the user enable needs) and two more.
fn name(n: u8) -> String {
    ["root", "a", "b"][usize::from(n % 3)].to_string()
}

/// One of a few keys, so that commands meet; or the empty key, or one
/// just above the limit.
#[derive(Arbitrary, Debug)]
enum Key {
    Few(u8),
    Empty,
    TooLong,
    Any(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Int(i64),
    Small(u8),
    /// Long enough that kept answers cross the byte bounds.
    Long(u8),
    TooLong,
    Any(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Seconds {
    Few(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Advance {
    Ms(u16),
    /// Half the session timeout: two of these expire an idle session.
    HalfSession,
    Any(u64),
}

struct Run {
    limits: Limits,
    one: StateMachine,
    two: StateMachine,
    /// The last log index used.
    index: u64,
    /// The stamp of the next proposal (cluster time as the leader sees it).
    stamp: u64,
    /// Registered client ids with their next sequence number.
    clients: Vec<(u64, u64)>,
}

impl Run {
    fn step(&mut self, step: Step) {
        match step {
            Step::Write {
                client,
                back,
                ack,
                op,
            } => {
                let session = self.session(client, back, ack);
                self.propose(session, Some(op.command(&self.limits)));
            }
            Step::WriteAs {
                client_id,
                seq,
                first_incomplete,
                op,
            } => {
                let session = pb::Session {
                    client_id,
                    seq,
                    first_incomplete,
                };
                self.propose(Some(session), Some(op.command(&self.limits)));
            }
            Step::WriteBy { user, op } => {
                let user = user.map(name).unwrap_or_default();
                self.propose_by(None, Some(op.command(&self.limits)), user);
            }
            Step::Register => {
                let register = pb::Command {
                    op: Some(Op::Register(pb::RegisterSession {})),
                };
                if let Some(Outcome::Register(r)) = self.propose(None, Some(register)).result {
                    self.clients.push((r.client_id, 1));
                }
            }
            Step::Time(advance) => {
                self.stamp = advance.after(self.stamp);
                self.propose(None, None);
            }
            Step::Noop => {
                let entry = pb::Entry {
                    term: 1,
                    index: self.next_index(),
                    payload: Some(pb::entry::Payload::Noop(pb::Noop {})),
                    config_context: Bytes::new(),
                };
                self.commit(entry);
            }
            Step::Raw(bytes) => {
                let entry = pb::Entry {
                    term: 1,
                    index: self.next_index(),
                    payload: Some(pb::entry::Payload::Command(Bytes::from(bytes))),
                    config_context: Bytes::new(),
                };
                self.commit(entry);
            }
            Step::Get(key) => {
                let key = key.bytes(&self.limits);
                assert_eq!(self.one.get(&key), self.two.get(&key), "GET differs");
            }
            Step::Ttl(key) => {
                let key = key.bytes(&self.limits);
                assert_eq!(self.one.ttl(&key), self.two.ttl(&key), "TTL differs");
            }
            Step::Again => {
                let before = self.one.state_hash();
                let index = self.one.applied_index();
                let proposal = pb::Proposal::default().encode_to_vec();
                let answer = self.one.apply(index, &proposal);
                assert!(
                    matches!(answer.result, Some(Outcome::Error(_))),
                    "entry {index} applied twice: {answer:?}"
                );
                assert_eq!(
                    self.one.state_hash(),
                    before,
                    "a refused entry changed the state"
                );
                self.two.apply(index, &proposal);
            }
            Step::Snapshot(second) => {
                let (from, to) = if second {
                    (&self.two, &mut self.one)
                } else {
                    (&self.one, &mut self.two)
                };
                let restored =
                    StateMachine::restore(self.limits, &from.snapshot()).unwrap_or_else(|e| {
                        panic!("a snapshot of a live replica does not restore: {e:?}")
                    });
                assert_eq!(
                    restored.state_hash(),
                    from.state_hash(),
                    "hash after restore"
                );
                assert_eq!(&restored, from, "state after restore");
                *to = restored;
            }
            Step::Clock(advance) => self.stamp = advance.after(self.stamp),
        }
    }

    /// A session for the `client`-th registered client (none for 0).
    fn session(&mut self, client: u8, back: u8, ack: u8) -> Option<pb::Session> {
        if client == 0 || self.clients.is_empty() {
            return None;
        }
        let i = usize::from(client - 1) % self.clients.len();
        let (client_id, next) = &mut self.clients[i];
        let seq = next.saturating_sub(u64::from(back % 8));
        if seq == *next {
            *next += 1;
        }
        Some(pb::Session {
            client_id: *client_id,
            seq,
            first_incomplete: seq.saturating_sub(u64::from(ack)),
        })
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Proposes as a leader does: the command in a stamped proposal, in an
    /// entry of the log; returns the answer.
    fn propose(
        &mut self,
        session: Option<pb::Session>,
        command: Option<pb::Command>,
    ) -> pb::WriteResponse {
        self.propose_by(session, command, String::new())
    }

    /// [`Run::propose`] on behalf of `user` (empty: nobody).
    fn propose_by(
        &mut self,
        session: Option<pb::Session>,
        command: Option<pb::Command>,
        user: String,
    ) -> pb::WriteResponse {
        let proposal = pb::Proposal {
            session,
            stamp_ms: self.stamp,
            command,
            user,
        };
        let entry = pb::Entry {
            term: 1,
            index: self.next_index(),
            payload: Some(pb::entry::Payload::Command(proposal.encode_to_vec().into())),
            config_context: Bytes::new(),
        };
        self.commit(entry).unwrap_or_default()
    }

    /// A committed entry as a follower gets it: bytes, decoded, applied (a
    /// command) or skipped (anything else), on both replicas.
    fn commit(&mut self, entry: pb::Entry) -> Option<pb::WriteResponse> {
        let bytes = entry.encode_to_vec();
        let entry = pb::Entry::decode(&bytes[..]).expect("an entry just encoded");
        let entry = crate::storage::entry_from_pb(entry).expect("a valid entry");
        let Payload::Command(proposal) = &entry.payload else {
            return None;
        };
        let index = entry.index().0;
        let one = self.one.apply(index, proposal);
        let two = self.two.apply(index, proposal);
        assert_eq!(one, two, "the replicas answer entry {index} differently");
        Some(one)
    }

    fn check(&self) {
        for (name, sm) in [("one", &self.one), ("two", &self.two)] {
            if let Err(e) = sm.check_invariants() {
                panic!(
                    "replica {name} breaks an invariant at {}: {e}",
                    sm.applied_index()
                );
            }
        }
        assert_eq!(
            self.one.state_hash(),
            self.two.state_hash(),
            "the replicas' states differ at {}",
            self.one.applied_index()
        );
    }
}

impl Cmd {
    fn command(self, limits: &Limits) -> pb::Command {
        let op = match self {
            Cmd::Set(key, value) => Op::Set(pb::SetCmd {
                key: key.bytes(limits),
                value: value.bytes(limits),
            }),
            Cmd::Del(key) => Op::Del(pb::DelCmd {
                key: key.bytes(limits),
            }),
            Cmd::Incr(key) => Op::Incr(pb::IncrCmd {
                key: key.bytes(limits),
            }),
            Cmd::Expire(key, seconds) => Op::Expire(pb::ExpireCmd {
                key: key.bytes(limits),
                seconds: match seconds {
                    Seconds::Few(s) => u64::from(s),
                    Seconds::Any(s) => s,
                },
            }),
            Cmd::Cas(key, expected, value) => Op::Cas(pb::CasCmd {
                key: key.bytes(limits),
                expected: expected.map(|v| v.bytes(limits)),
                value: value.bytes(limits),
            }),
            Cmd::StateCheck => Op::StateCheck(pb::StateCheckCmd {}),
            Cmd::StateReport(index, hash, reporter) => Op::StateReport(pb::StateReportCmd {
                index,
                hash,
                reporter: u64::from(reporter),
            }),
            Cmd::MemberAddrs(id, addr) => Op::MemberAddrs(pb::MemberAddrsCmd {
                id: u64::from(id % 8),
                peer_addr: addr.clone(),
                client_addr: addr,
            }),
            Cmd::Empty => return pb::Command { op: None },
            Cmd::Auth(step) => Op::Auth(pb::AuthCmd {
                op: Some(step.op(limits)),
            }),
        };
        pb::Command { op: Some(op) }
    }
}

impl AuthStep {
    fn op(self, limits: &Limits) -> pb::auth_cmd::Op {
        use pb::auth_cmd::Op as A;
        // What the receiving node proposes: a hash, never a password.
        let password = |n| pb::UserAddCmd {
            name: name(n),
            password: String::new(),
            password_hash: format!("$argon2id$v=19$m=8,t=1,p=1$c2FsdA${n}"),
        };
        let user_role = |u, r| pb::UserRoleCmd {
            user: name(u),
            role: name(r),
        };
        match self {
            AuthStep::UserAdd(n) => A::UserAdd(password(n)),
            AuthStep::UserDelete(n) => A::UserDelete(pb::UserNameCmd { name: name(n) }),
            AuthStep::UserGrant(u, r) => A::UserGrant(user_role(u, r)),
            AuthStep::UserRevoke(u, r) => A::UserRevoke(user_role(u, r)),
            AuthStep::RoleAdd(n) => A::RoleAdd(pb::RoleNameCmd { name: name(n) }),
            AuthStep::RoleDelete(n) => A::RoleDelete(pb::RoleNameCmd { name: name(n) }),
            AuthStep::RoleGrant(r, prefix, p) => A::RoleGrant(pb::RoleGrantCmd {
                role: name(r),
                prefix: prefix.bytes(limits),
                permission: i32::from(p % 4),
            }),
            AuthStep::RoleRevoke(r, prefix) => A::RoleRevoke(pb::RoleGrantCmd {
                role: name(r),
                prefix: prefix.bytes(limits),
                permission: 0,
            }),
            AuthStep::Enable => A::Enable(pb::AuthEnableCmd {
                signing_key: Bytes::from(vec![7; crate::kv::SIGNING_KEY_BYTES]),
            }),
            AuthStep::Disable => A::Disable(pb::AuthDisableCmd {}),
        }
    }
}

impl Key {
    fn bytes(self, limits: &Limits) -> Bytes {
        match self {
            Key::Few(k) => Bytes::from(vec![b'a' + k % 4]),
            Key::Empty => Bytes::new(),
            Key::TooLong => Bytes::from(vec![b'k'; limits.max_key_bytes + 1]),
            Key::Any(k) => Bytes::from(k),
        }
    }
}

impl Value {
    fn bytes(self, limits: &Limits) -> Bytes {
        match self {
            Value::Int(n) => Bytes::from(n.to_string()),
            Value::Small(n) => Bytes::from(vec![b'v'; usize::from(n % 4)]),
            Value::Long(n) => Bytes::from(vec![b'L'; limits.max_value_bytes - usize::from(n % 8)]),
            Value::TooLong => Bytes::from(vec![b'v'; limits.max_value_bytes + 1]),
            Value::Any(v) => Bytes::from(v),
        }
    }
}

impl Advance {
    fn after(self, stamp: u64) -> u64 {
        match self {
            Advance::Ms(ms) => stamp.saturating_add(u64::from(ms)),
            Advance::HalfSession => stamp.saturating_add(SESSION_TIMEOUT_MS / 2),
            Advance::Any(to) => to,
        }
    }
}

/// Inputs of random bytes: each decodes to some history (`arbitrary` reads
/// any bytes), a start the fuzzer then mutates.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64: deterministic, so the seeds are the same everywhere.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    [64, 128, 256, 512, 1024, 2048]
        .iter()
        .map(|&len| (0..len).map(|_| next() as u8).collect())
        .collect()
}
