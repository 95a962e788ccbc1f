//! The snapshot encoding of the state machine.
//!
//! Layout: `b"RKVS"`, format version (u32 LE), CRC-32C of the body (u32 LE),
//! then the body, a protobuf `SnapshotBody`. The body lists keys and sessions
//! in ascending order, so the same state always encodes to the same bytes
//! (replicas can compare snapshots byte for byte). The messages are private:
//! the snapshot is only ever read back by this module. A new layout gets a
//! new version; `restore` refuses versions it does not know.

use super::auth::{Auth, AuthRecord};
use super::error::invalid;
use super::sessions::{Client, MAX_KEPT_RESPONSES, Sessions};
use super::store::{Item, Store};
use super::{Limits, StateMachine};
use crate::pb::{KvError, MemberAddrsCmd, WriteResponse};
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

const MAGIC: &[u8; 4] = b"RKVS";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 12;

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotBody {
    #[prost(uint64, tag = "1")]
    applied_index: u64,
    #[prost(uint64, tag = "2")]
    time_ms: u64,
    #[prost(message, repeated, tag = "3")]
    items: Vec<ItemRecord>,
    #[prost(message, repeated, tag = "4")]
    sessions: Vec<SessionRecord>,
    /// Member addresses by ascending id (absent in older snapshots: none).
    #[prost(message, repeated, tag = "5")]
    members: Vec<MemberAddrsCmd>,
    /// Users and roles (absent in older snapshots and while empty).
    #[prost(message, optional, tag = "6")]
    auth: Option<AuthRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ItemRecord {
    #[prost(bytes = "bytes", tag = "1")]
    key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
    #[prost(uint64, optional, tag = "3")]
    deadline_ms: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionRecord {
    #[prost(uint64, tag = "1")]
    client_id: u64,
    #[prost(uint64, tag = "2")]
    first_incomplete: u64,
    #[prost(uint64, tag = "3")]
    last_active_ms: u64,
    #[prost(message, repeated, tag = "4")]
    responses: Vec<KeptResponse>,
    /// The user that registered it (absent in older snapshots: none).
    #[prost(string, tag = "5")]
    owner: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeptResponse {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(message, optional, tag = "2")]
    response: Option<WriteResponse>,
}

impl StateMachine {
    /// Encodes the whole state (keys, values, deadlines, clock, sessions and
    /// applied index) deterministically; see the module docs for the layout.
    ///
    /// Written straight into the output from the state's own keys and values:
    /// no list of records beside the state, no second copy of the body, and
    /// no clone of a key or value (a clone gives a `Bytes` a shared header it
    /// keeps for good, 32 bytes a key and a value once every key was
    /// snapshotted; docs/performance.md, "Data at scale"). The bytes are
    /// those of `SnapshotBody`'s encoding (a test holds the two together).
    pub fn snapshot(&self) -> Bytes {
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
        // Fields 1 and 2, then the items (3), then fields 4 to 6: protobuf
        // writes fields in tag order, so the parts concatenate to the body.
        let head = SnapshotBody {
            applied_index: self.applied_index,
            time_ms: self.time_ms,
            ..Default::default()
        };
        let tail = SnapshotBody {
            sessions: self.sessions.iter().map(session_record).collect(),
            members: self.members.values().cloned().collect(),
            auth: self.auth.record(),
            ..Default::default()
        };
        let items: usize = self
            .store
            .iter()
            .map(|(key, item)| {
                let len = item_len(key, item);
                1 + encoded_len_varint(len as u64) + len
            })
            .sum();
        let body_len = head.encoded_len() + items + tail.encoded_len();
        let mut out = BytesMut::with_capacity(HEADER_LEN + body_len);
        out.put_slice(MAGIC);
        out.put_u32_le(VERSION);
        out.put_u32_le(0); // the body's CRC, below
        head.encode_raw(&mut out);
        for (key, item) in self.store.iter() {
            encode_key(3, WireType::LengthDelimited, &mut out);
            encode_varint(item_len(key, item) as u64, &mut out);
            encode_item(key, item, &mut out);
        }
        tail.encode_raw(&mut out);
        let crc = crc32c::crc32c(&out[HEADER_LEN..]);
        out[8..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        out.freeze()
    }

    /// Rebuilds exactly the state that `snapshot` encoded, after checking the
    /// header, checksum and invariants (sorted unique keys and sessions, kept
    /// answers at or above their client's `first_incomplete`). Errors have
    /// code `INVALID`. Keys and values are not checked against `limits`:
    /// they were accepted under the limits of their time, and refusing them
    /// now would leave this replica unable to catch up.
    pub fn restore(limits: Limits, data: &[u8]) -> Result<StateMachine, KvError> {
        let body = check_header(data)?;
        let body = SnapshotBody::decode(body)
            .map_err(|e| invalid(format!("snapshot body does not decode: {e}")))?;
        let mut sm = StateMachine::new(limits);
        sm.applied_index = body.applied_index;
        sm.time_ms = body.time_ms;
        sm.store = restore_store(body.items)?;
        sm.sessions = restore_sessions(&limits, body.sessions, body.applied_index)?;
        sm.members = body.members.into_iter().map(|m| (m.id, m)).collect();
        sm.auth = std::sync::Arc::new(Auth::from_record(body.auth)?);
        Ok(sm)
    }
}

fn check_header(data: &[u8]) -> Result<&[u8], KvError> {
    if data.len() < HEADER_LEN || &data[..4] != MAGIC {
        return Err(invalid("not a raftkv state machine snapshot"));
    }
    let version = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(invalid(format!(
            "snapshot format version {version} is not supported (this build reads {VERSION})"
        )));
    }
    let crc = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    let body = &data[HEADER_LEN..];
    if crc32c::crc32c(body) != crc {
        return Err(invalid("snapshot checksum mismatch: the data is corrupt"));
    }
    Ok(body)
}

/// The encoded length of an `ItemRecord` of `key` and `item`.
fn item_len(key: &Bytes, item: &Item) -> usize {
    use prost::encoding::{bytes, uint64};
    let field = |tag, b: &Bytes| {
        if b.is_empty() {
            0
        } else {
            bytes::encoded_len(tag, b)
        }
    };
    field(1, key) + field(2, &item.value) + item.deadline.map_or(0, |d| uint64::encoded_len(3, &d))
}

/// Writes the fields of an `ItemRecord` of `key` and `item`, as prost would.
fn encode_item(key: &Bytes, item: &Item, out: &mut BytesMut) {
    use prost::encoding::{bytes, uint64};
    if !key.is_empty() {
        bytes::encode(1, key, out);
    }
    if !item.value.is_empty() {
        bytes::encode(2, &item.value, out);
    }
    if let Some(d) = item.deadline {
        uint64::encode(3, &d, out);
    }
}

#[cfg(test)]
fn item_record((key, item): (&Bytes, &Item)) -> ItemRecord {
    ItemRecord {
        key: key.clone(),
        value: item.value.clone(),
        deadline_ms: item.deadline,
    }
}

fn session_record((client_id, client): (&u64, &Client)) -> SessionRecord {
    SessionRecord {
        client_id: *client_id,
        first_incomplete: client.first_incomplete,
        last_active_ms: client.last_active_ms,
        owner: client.owner.clone(),
        responses: client
            .responses
            .iter()
            .map(|(seq, response)| KeptResponse {
                seq: *seq,
                response: Some(response.clone()),
            })
            .collect(),
    }
}

fn restore_store(items: Vec<ItemRecord>) -> Result<Store, KvError> {
    let mut store = Store::default();
    // Checked in place: keeping a clone of the previous key gave every key
    // a shared header for good (see `snapshot`).
    for (i, record) in items.iter().enumerate() {
        if record.key.is_empty() {
            return Err(invalid("snapshot holds an empty key"));
        }
        if i > 0 && items[i - 1].key >= record.key {
            return Err(invalid("snapshot keys are not in strictly ascending order"));
        }
    }
    for record in items {
        let item = Item {
            value: record.value,
            deadline: record.deadline_ms,
        };
        store.insert(record.key, item);
    }
    Ok(store)
}

fn restore_sessions(
    limits: &Limits,
    records: Vec<SessionRecord>,
    applied: u64,
) -> Result<Sessions, KvError> {
    if records.len() > limits.max_sessions {
        return Err(invalid(format!(
            "snapshot holds {} sessions; at most {} are kept",
            records.len(),
            limits.max_sessions
        )));
    }
    let mut sessions = Sessions::new(limits);
    let mut previous = 0;
    for record in records {
        let id = record.client_id;
        if id <= previous || id > applied {
            return Err(invalid(format!(
                "snapshot session {id} is out of order or not a log index at or below {applied}"
            )));
        }
        previous = id;
        if record.responses.len() > MAX_KEPT_RESPONSES {
            return Err(invalid(format!(
                "snapshot session {id} keeps too many answers"
            )));
        }
        let mut client = Client {
            first_incomplete: record.first_incomplete,
            last_active_ms: record.last_active_ms,
            responses: Default::default(),
            owner: record.owner,
        };
        for kept in record.responses {
            let above_previous = client
                .responses
                .last_key_value()
                .is_none_or(|(seq, _)| *seq < kept.seq);
            match kept.response {
                Some(response) if above_previous && kept.seq >= client.first_incomplete => {
                    client.responses.insert(kept.seq, response);
                }
                _ => {
                    return Err(invalid(format!(
                        "snapshot session {id} has an invalid kept answer (seq {})",
                        kept.seq
                    )));
                }
            }
        }
        sessions.insert(id, client);
    }
    // The bounds too: a table beyond them would evict differently from
    // the replicas that applied the log.
    sessions
        .check_invariants()
        .map_err(|e| invalid(format!("snapshot sessions: {e}")))?;
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_streamed_encoding_is_the_bodys() {
        let mut sm = StateMachine::new(Limits::default());
        sm.applied_index = 7;
        sm.time_ms = 1234;
        let item = |value: &'static [u8], deadline| Item {
            value: Bytes::from_static(value),
            deadline,
        };
        sm.store.insert(Bytes::from_static(b"a"), item(b"", None));
        sm.store
            .insert(Bytes::from_static(b"b"), item(b"x", Some(0)));
        sm.store
            .insert(Bytes::from_static(b"c"), item(b"yy", Some(u64::MAX)));
        sm.store
            .insert(Bytes::from(vec![b'k'; 300]), item(&[7; 200], None));
        sm.sessions.register(3, 1000, "alice");
        let body = SnapshotBody {
            applied_index: sm.applied_index,
            time_ms: sm.time_ms,
            items: sm.store.iter().map(item_record).collect(),
            sessions: sm.sessions.iter().map(session_record).collect(),
            members: sm.members.values().cloned().collect(),
            auth: sm.auth.record(),
        }
        .encode_to_vec();
        let data = sm.snapshot();
        assert_eq!(&data[HEADER_LEN..], &body[..]);
        assert_eq!(&data[8..12], &crc32c::crc32c(&body).to_le_bytes());
        let back = StateMachine::restore(Limits::default(), &data).unwrap();
        assert_eq!(back.snapshot(), data);
    }

    use super::*;

    fn framed(body: &SnapshotBody) -> Vec<u8> {
        let body = body.encode_to_vec();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn item(key: &str) -> ItemRecord {
        ItemRecord {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::new(),
            deadline_ms: None,
        }
    }

    fn session(client_id: u64, first_incomplete: u64, seqs: &[u64]) -> SessionRecord {
        SessionRecord {
            client_id,
            first_incomplete,
            last_active_ms: 0,
            owner: String::new(),
            responses: seqs
                .iter()
                .map(|&seq| KeptResponse {
                    seq,
                    response: Some(WriteResponse::default()),
                })
                .collect(),
        }
    }

    fn restore(items: Vec<ItemRecord>, sessions: Vec<SessionRecord>) -> Result<(), String> {
        let body = SnapshotBody {
            applied_index: 10,
            time_ms: 0,
            items,
            sessions,
            members: Vec::new(),
            auth: None,
        };
        StateMachine::restore(Limits::default(), &framed(&body))
            .map(|_| ())
            .map_err(|e| e.message)
    }

    /// What a snapshot of a large state costs, for docs/performance.md
    /// (`RAFTKV_SNAPSHOT_KEYS`, default 1,000,000 keys of 100 bytes):
    /// `cargo test --release --lib kv::snapshot::tests::cost_of_a_large_state
    /// -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check (tens of seconds for 1M keys): \
                cargo test --release --lib kv::snapshot::tests::cost_of_a_large_state \
                -- --ignored --nocapture"]
    fn cost_of_a_large_state() {
        let n: usize = std::env::var("RAFTKV_SNAPSHOT_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let items = (0..n)
            .map(|i| ItemRecord {
                key: Bytes::from(format!("key-{i:08}")),
                value: Bytes::from(vec![b'v'; 100]),
                deadline_ms: None,
            })
            .collect();
        let body = SnapshotBody {
            applied_index: 10,
            time_ms: 0,
            items,
            sessions: Vec::new(),
            members: Vec::new(),
            auth: None,
        };
        let sm = StateMachine::restore(Limits::default(), &framed(&body)).unwrap();
        let time = |what: &str, f: &mut dyn FnMut()| {
            let t = std::time::Instant::now();
            f();
            println!("{n} keys: {what} took {:?}", t.elapsed());
        };
        let mut copy = None;
        time("clone (on the loop)", &mut || copy = Some(sm.clone()));
        let mut data = Bytes::new();
        time("encode", &mut || data = copy.as_ref().unwrap().snapshot());
        let mut back = None;
        time("restore", &mut || {
            back = Some(StateMachine::restore(Limits::default(), &data).unwrap())
        });
        time("drop", &mut || drop(copy.take()));
        println!("{n} keys: {} snapshot bytes", data.len());
        assert_eq!(back.unwrap(), sm);
    }

    #[test]
    fn well_formed_body_restores() {
        restore(
            vec![item("a"), item("b")],
            vec![session(3, 2, &[2, 5]), session(7, 0, &[])],
        )
        .unwrap();
    }

    #[test]
    fn broken_invariants_are_refused() {
        assert!(restore(vec![item("")], vec![]).is_err());
        assert!(restore(vec![item("b"), item("a")], vec![]).is_err());
        assert!(restore(vec![item("a"), item("a")], vec![]).is_err());
        assert!(restore(vec![], vec![session(0, 0, &[])]).is_err());
        assert!(
            restore(vec![], vec![session(11, 0, &[])]).is_err(),
            "above applied"
        );
        assert!(restore(vec![], vec![session(5, 0, &[]), session(3, 0, &[])]).is_err());
        assert!(
            restore(vec![], vec![session(5, 3, &[2])]).is_err(),
            "below first_incomplete"
        );
        assert!(restore(vec![], vec![session(5, 0, &[4, 4])]).is_err());
        let mut no_response = session(5, 0, &[1]);
        no_response.responses[0].response = None;
        assert!(restore(vec![], vec![no_response]).is_err());
    }
}
