//! A deterministic hash of the whole state machine, for comparing replicas.
//!
//! Two replicas that applied the same log up to the same index must hold
//! the same state; this hash is how they prove it to each other (see
//! docs/consensus.md, "Replica hash checks"). It covers everything `apply`
//! and the reads depend on: the applied index, cluster time, the limits
//! `apply` enforces, every key with its value and deadline, every session
//! with its kept answers and owner, the member addresses, and the auth
//! store (users with password hashes, roles, the signing key). Derived indexes (the
//! expiry index, the session activity and byte counts) are left out: they
//! are rebuilt from these, and `check_invariants` checks that they match.
//!
//! The hash is XXH3-64 over a length-prefixed little-endian encoding, so it
//! is the same on every platform and build.

use super::StateMachine;
use prost::Message;
use xxhash_rust::xxh3::Xxh3;

/// Changes whenever the encoding below changes, so that builds hashing
/// differently never compare equal by accident.
const DOMAIN: &[u8] = b"raftkv state hash 1";

struct Hasher(Xxh3);

impl Hasher {
    fn u64(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }

    fn message(&mut self, m: &impl Message) {
        self.bytes(&m.encode_to_vec());
    }
}

impl StateMachine {
    /// The hash of the whole state (see the module docs). Reads every key:
    /// the node computes it on a copy, off its event loop.
    pub fn state_hash(&self) -> u64 {
        let mut h = Hasher(Xxh3::new());
        h.bytes(DOMAIN);
        h.u64(self.applied_index);
        h.u64(self.time_ms);
        h.u64(self.limits.max_key_bytes as u64);
        h.u64(self.limits.max_value_bytes as u64);
        h.u64(self.limits.max_sessions as u64);
        h.u64(self.limits.max_kept_bytes_per_client as u64);
        h.u64(self.limits.max_kept_bytes as u64);
        h.u64(self.store.len() as u64);
        for (key, item) in self.store.iter() {
            h.bytes(key);
            h.bytes(&item.value);
            match item.deadline {
                Some(d) => {
                    h.u64(1);
                    h.u64(d);
                }
                None => h.u64(0),
            }
        }
        let sessions: Vec<_> = self.sessions.iter().collect();
        h.u64(sessions.len() as u64);
        for (&id, client) in sessions {
            h.u64(id);
            h.u64(client.first_incomplete);
            h.u64(client.last_active_ms);
            h.u64(client.responses.len() as u64);
            for (&seq, response) in &client.responses {
                h.u64(seq);
                h.message(response);
            }
            // Only when set, so states without auth hash as before it.
            if !client.owner.is_empty() {
                h.bytes(client.owner.as_bytes());
            }
        }
        h.u64(self.members.len() as u64);
        for member in self.members.values() {
            h.message(member);
        }
        if let Some(auth) = self.auth.record() {
            h.message(&auth);
        }
        h.0.digest()
    }
}
