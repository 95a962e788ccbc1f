//! The simulator's small replicated key-value state machine: GET, SET, INCR
//! with exactly-once client sessions, deterministic and snapshottable.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cmd {
    Set(String, String),
    Incr(String),
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub client: u64,
    pub seq: u64,
    pub cmd: Cmd,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Ok,
    Value(i64),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kv {
    pub data: BTreeMap<String, String>,
    /// client -> (last seq, its reply): clients here have one request in
    /// flight, so anything at or below the last seq was already applied.
    pub sessions: BTreeMap<u64, (u64, Reply)>,
}

impl Kv {
    pub fn apply(&mut self, bytes: &[u8]) -> (u64, u64, Reply) {
        let req: Request = serde_json::from_slice(bytes).expect("sim command");
        if let Some((seq, reply)) = self.sessions.get(&req.client)
            && *seq >= req.seq
        {
            // A retry (or a late duplicate of an older request): no effect.
            return (req.client, req.seq, reply.clone());
        }
        let reply = match req.cmd {
            Cmd::Set(k, v) => {
                self.data.insert(k, v);
                Reply::Ok
            }
            Cmd::Incr(k) => {
                let n = self
                    .data
                    .get(&k)
                    .map_or(0, |v| v.parse::<i64>().expect("integer"))
                    + 1;
                self.data.insert(k, n.to_string());
                Reply::Value(n)
            }
        };
        self.sessions.insert(req.client, (req.seq, reply.clone()));
        (req.client, req.seq, reply)
    }

    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialize")
    }

    pub fn restore(data: &[u8]) -> Kv {
        if data.is_empty() {
            return Kv::default();
        }
        serde_json::from_slice(data).expect("sim snapshot")
    }
}
