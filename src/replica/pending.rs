//! The requests a replica holds until the log or the core decides them:
//! proposals by index (with the term they were proposed in) and reads by id
//! (then by the index they wait for).

use super::{Callers, ReadKind};
use crate::raft::{LogId, ReadState, Term};
use std::collections::BTreeMap;

/// Everyone still waiting, by kind of request.
pub(super) struct Waiting<C: Callers> {
    pub writes: Vec<C::Write>,
    pub changes: Vec<C::Change>,
    pub reads: Vec<C::Read>,
}

pub(super) struct Pending<C: Callers> {
    writes: BTreeMap<u64, (Term, C::Write)>,
    changes: BTreeMap<u64, (Term, C::Change)>,
    /// Reads the core has not released yet, and released ones not answered.
    /// (Ordered: failing them all answers in the same order on every run.)
    reads: BTreeMap<u64, (ReadKind, C::Read)>,
    /// Reads the core released at an index not applied yet: (index, id).
    waiting: Vec<(u64, u64)>,
    next_read: u64,
}

impl<C: Callers> Default for Pending<C> {
    fn default() -> Self {
        Pending {
            writes: BTreeMap::new(),
            changes: BTreeMap::new(),
            reads: BTreeMap::new(),
            waiting: Vec::new(),
            next_read: 1,
        }
    }
}

impl<C: Callers> Pending<C> {
    pub fn proposals(&self) -> usize {
        self.writes.len() + self.changes.len()
    }

    pub fn add_write(&mut self, id: LogId, caller: C::Write) {
        self.writes.insert(id.index.0, (id.term, caller));
    }

    pub fn add_change(&mut self, id: LogId, caller: C::Change) {
        self.changes.insert(id.index.0, (id.term, caller));
    }

    pub fn take_write(&mut self, index: u64) -> Option<(Term, C::Write)> {
        self.writes.remove(&index)
    }

    pub fn take_change(&mut self, index: u64) -> Option<(Term, C::Change)> {
        self.changes.remove(&index)
    }

    pub fn take_writes_up_to(&mut self, index: u64) -> Vec<C::Write> {
        let rest = self.writes.split_off(&(index + 1));
        let covered = std::mem::replace(&mut self.writes, rest);
        covered.into_values().map(|(_, c)| c).collect()
    }

    pub fn take_changes_up_to(&mut self, index: u64) -> Vec<C::Change> {
        let rest = self.changes.split_off(&(index + 1));
        let covered = std::mem::replace(&mut self.changes, rest);
        covered.into_values().map(|(_, c)| c).collect()
    }

    pub fn next_read_id(&mut self) -> u64 {
        let id = self.next_read;
        self.next_read += 1;
        id
    }

    pub fn add_read(&mut self, id: u64, kind: ReadKind, caller: C::Read) {
        self.reads.insert(id, (kind, caller));
    }

    pub fn take_read(&mut self, id: u64) -> Option<(ReadKind, C::Read)> {
        self.reads.remove(&id)
    }

    /// The core released read `r.id`: it may be answered once `r.index` is applied.
    pub fn release_read(&mut self, r: ReadState) {
        self.waiting.push((r.index.0, r.id));
    }

    /// Takes the released reads whose index is applied, in release order.
    pub fn reads_applied(&mut self, applied: u64) -> Vec<(ReadKind, C::Read)> {
        let mut ready = Vec::new();
        let reads = &mut self.reads;
        self.waiting.retain(|&(index, id)| {
            if index > applied {
                return true;
            }
            ready.extend(reads.remove(&id));
            false
        });
        ready
    }

    /// Takes every waiting request.
    pub fn take_all(&mut self) -> Waiting<C> {
        self.waiting.clear();
        Waiting {
            writes: self.take_writes_up_to(u64::MAX - 1),
            changes: self.take_changes_up_to(u64::MAX - 1),
            reads: std::mem::take(&mut self.reads)
                .into_values()
                .map(|(_, c)| c)
                .collect(),
        }
    }
}
