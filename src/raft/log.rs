//! The in-memory log since the last snapshot: what is stable, what still
//! has to be persisted, what is committed and what was handed out to apply.

use bytes::Bytes;

use super::{Entry, LogId, LogIndex, Membership, Payload, Released, Snapshot, SnapshotMeta, Term};

/// Why an AppendEntries could not be accepted, with the hint that lets the
/// leader back up a whole term at a time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Conflict(pub LogId);

pub(crate) struct RaftLog {
    /// What the latest snapshot covers; (0, 0) and the bootstrap membership if none.
    snapshot: SnapshotMeta,
    snapshot_data: Option<Bytes>,
    /// What was dropped and not yet handed over (see `Ready::released`).
    released: Released,
    /// Entries `snapshot.last.index + 1 ..= last`.
    entries: Vec<Entry>,
    /// Membership entries still in the log, in index order.
    configs: Vec<(LogIndex, Membership)>,
    // Invariant: snapshot.last.index <= applied <= committed <= last_index()
    committed: LogIndex,
    /// Last index handed out in `Ready.committed`.
    applied: LogIndex,
    /// First index not yet handed out in `Ready.entries` for persisting.
    unstable_from: LogIndex,
    /// A snapshot installed since the last ready, to hand out for persisting.
    pending_snapshot: Option<Snapshot>,
}

impl RaftLog {
    pub fn restore(snapshot: Option<Snapshot>, entries: Vec<Entry>, commit: LogIndex) -> RaftLog {
        let (meta, data) = match snapshot {
            Some(s) => (s.meta, Some(s.data)),
            None => (SnapshotMeta::default(), None),
        };
        let base = meta.last.index;
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.index() > base).collect();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index().0,
                base.0 + 1 + i as u64,
                "log handed to the core has a gap"
            );
        }
        let configs = entries
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Config { membership: m, .. } => Some((e.index(), m.clone())),
                _ => None,
            })
            .collect();
        let last = LogIndex(base.0 + entries.len() as u64);
        let committed = commit.max(base).min(last);
        RaftLog {
            snapshot: meta,
            snapshot_data: data,
            entries,
            configs,
            committed,
            applied: base,
            unstable_from: last.next(),
            pending_snapshot: None,
            released: Released::default(),
        }
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot_data.as_ref().map(|d| Snapshot {
            meta: self.snapshot.clone(),
            data: d.clone(),
        })
    }

    pub fn first_index(&self) -> LogIndex {
        self.snapshot.last.index.next()
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.last.index.0 + self.entries.len() as u64)
    }

    pub fn last_id(&self) -> LogId {
        self.entries
            .last()
            .map(|e| e.id)
            .unwrap_or(self.snapshot.last)
    }

    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The term of the entry at `index`, if the log (or snapshot) still knows it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last.index {
            return Some(self.snapshot.last.term);
        }
        self.entry(index).map(|e| e.term())
    }

    fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let base = self.snapshot.last.index.0;
        if index.0 <= base {
            return None;
        }
        self.entries.get((index.0 - base - 1) as usize)
    }

    /// The membership in force: the latest in the log, committed or not.
    pub fn membership(&self) -> &Membership {
        self.configs
            .last()
            .map(|(_, m)| m)
            .unwrap_or(&self.snapshot.membership)
    }

    /// Index of the latest membership entry (0 if it came from the snapshot).
    pub fn membership_index(&self) -> LogIndex {
        self.configs
            .last()
            .map(|(i, _)| *i)
            .unwrap_or(self.snapshot.last.index)
    }

    fn membership_at(&self, index: LogIndex) -> Membership {
        self.configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| self.snapshot.membership.clone())
    }

    /// Entries from `from` on, bounded by count and bytes (at least one if any).
    /// None if `from` has been compacted into the snapshot.
    pub fn slice(
        &self,
        from: LogIndex,
        max_entries: usize,
        max_bytes: usize,
    ) -> Option<Vec<Entry>> {
        if from < self.first_index() {
            return None;
        }
        let start = (from.0 - self.first_index().0) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for e in self.entries.iter().skip(start).take(max_entries) {
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    /// The leader appends a new entry of its term.
    pub fn append(&mut self, term: Term, payload: Payload) -> LogId {
        let id = LogId {
            term,
            index: self.last_index().next(),
        };
        if let Payload::Config { membership: m, .. } = &payload {
            self.configs.push((id.index, m.clone()));
        }
        self.entries.push(Entry { id, payload });
        id
    }

    /// A follower accepts the leader's entries after `prev`, truncating a
    /// conflicting suffix. Returns the index of the last entry now known to
    /// match the leader's log.
    pub fn try_append(&mut self, prev: LogId, entries: Vec<Entry>) -> Result<LogIndex, Conflict> {
        let last = self.last_index();
        if prev.index > last {
            return Err(Conflict(LogId {
                term: Term(0),
                index: last.next(),
            }));
        }
        // Entries at or below the snapshot are committed, hence match.
        if prev.index >= self.snapshot.last.index {
            let term = self.term_at(prev.index).expect("index within the log");
            if term != prev.term {
                return Err(Conflict(LogId {
                    term,
                    index: self.first_index_of_term(term, prev.index),
                }));
            }
        }
        let matched = LogIndex(prev.index.0 + entries.len() as u64);
        for e in entries {
            if e.index() <= self.snapshot.last.index {
                continue;
            }
            match self.term_at(e.index()) {
                Some(t) if t == e.term() => continue,
                Some(_) => self.truncate_from(e.index()),
                None => {}
            }
            debug_assert_eq!(e.index(), self.last_index().next());
            if let Payload::Config { membership: m, .. } = &e.payload {
                self.configs.push((e.index(), m.clone()));
            }
            self.unstable_from = self.unstable_from.min(e.index());
            self.entries.push(e);
        }
        Ok(matched)
    }

    /// Whether accepting `entries` (contiguous, as `validate` checks) would
    /// replace a committed entry with a different one.
    pub fn overwrites_committed(&self, entries: &[Entry]) -> bool {
        entries.iter().any(|e| {
            e.index() <= self.committed && self.term_at(e.index()).is_some_and(|t| t != e.term())
        })
    }

    fn first_index_of_term(&self, term: Term, from: LogIndex) -> LogIndex {
        let mut i = from;
        while i > self.first_index() && self.term_at(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index the leader holds with `term`, if any (for conflict hints).
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let pos = self.entries.iter().rposition(|e| e.term() == term)?;
        let idx = self.entries[pos].index();
        Some(idx)
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.committed,
            "Raft safety: truncating committed entry {index} (committed {})",
            self.committed
        );
        let keep = (index.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
        self.configs.retain(|(i, _)| *i < index);
        self.unstable_from = self.unstable_from.min(index);
    }

    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Entries not yet handed out for persisting.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.unstable_from.max(self.first_index());
        let out = self.slice(from, usize::MAX, usize::MAX).unwrap_or_default();
        self.unstable_from = self.last_index().next();
        out
    }

    pub fn take_snapshot_to_persist(&mut self) -> Option<Snapshot> {
        self.pending_snapshot.take()
    }

    /// Committed entries not yet handed out to apply.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        if self.applied >= self.committed {
            return Vec::new();
        }
        let n = (self.committed.0 - self.applied.0) as usize;
        let out = self
            .slice(self.applied.next(), n, usize::MAX)
            .expect("unapplied entries are never compacted");
        self.applied = self.committed;
        out
    }

    /// The caller snapshotted its state machine at `index` (<= applied).
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Snapshot {
        assert!(index <= self.applied, "snapshot beyond the applied index");
        assert!(
            index >= self.snapshot.last.index,
            "snapshot older than the current one"
        );
        let meta = SnapshotMeta {
            last: LogId {
                term: self.term_at(index).expect("index within the log"),
                index,
            },
            membership: self.membership_at(index),
        };
        let drop = (index.0 - self.snapshot.last.index.0) as usize;
        // Keep the short tail; the long prefix is freed by whoever takes it
        // (`take_released`), not here.
        let tail = self.entries.split_off(drop);
        let prefix = std::mem::replace(&mut self.entries, tail);
        let old_data = self.snapshot_data.replace(data);
        self.release(prefix, old_data);
        self.configs.retain(|(i, _)| *i > index);
        self.snapshot = meta;
        self.snapshot().expect("just set")
    }

    fn release(&mut self, entries: Vec<Entry>, data: Option<Bytes>) {
        let r = &mut self.released;
        if r.entries.is_empty() {
            r.entries = entries;
        } else {
            r.entries.extend(entries);
        }
        r.snapshots.extend(data);
    }

    /// What compactions and installs dropped since the last call.
    pub fn take_released(&mut self) -> Released {
        std::mem::take(&mut self.released)
    }

    /// A follower installs the leader's snapshot and drops its whole log:
    /// the leader resends what follows, and storage can simply discard its
    /// log too (no need to decide which suffix still agrees).
    pub fn install(&mut self, snap: Snapshot) {
        let last = snap.meta.last;
        let old = std::mem::take(&mut self.entries);
        let old_data = self.snapshot_data.replace(snap.data.clone());
        self.release(old, old_data);
        self.configs.clear();
        self.snapshot = snap.meta.clone();
        self.committed = self.committed.max(last.index);
        self.applied = last.index;
        // The log now ends at the snapshot, which may be below entries that
        // were already persisted: the next entry, appended by a follower or
        // by this node as leader, is the first to persist.
        self.unstable_from = self.first_index();
        self.pending_snapshot = Some(snap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::NodeId;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            id: LogId::new(term, index),
            payload: Payload::Command(Bytes::from(format!("{term}/{index}"))),
        }
    }

    fn log_with(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| entry(*t, i as u64 + 1))
            .collect();
        RaftLog::restore(None, entries, LogIndex(0))
    }

    #[test]
    fn rejects_missing_prev_with_length_hint() {
        let mut log = log_with(&[1, 1]);
        let err = log.try_append(LogId::new(1, 5), vec![]).unwrap_err();
        assert_eq!(err, Conflict(LogId::new(0, 3)));
    }

    #[test]
    fn rejects_conflicting_term_with_first_index_of_that_term() {
        let mut log = log_with(&[1, 2, 2, 2]);
        let err = log.try_append(LogId::new(3, 4), vec![]).unwrap_err();
        assert_eq!(err, Conflict(LogId::new(2, 2)));
    }

    #[test]
    fn truncates_conflicting_suffix_and_keeps_matching_prefix() {
        let mut log = log_with(&[1, 1, 2]);
        log.take_unstable();
        let m = log
            .try_append(LogId::new(1, 1), vec![entry(1, 2), entry(3, 3)])
            .unwrap();
        assert_eq!(m, LogIndex(3));
        assert_eq!(log.last_id(), LogId::new(3, 3));
        let unstable = log.take_unstable();
        assert_eq!(
            unstable.len(),
            1,
            "only the replaced entry must be persisted again"
        );
        assert_eq!(unstable[0].id, LogId::new(3, 3));
    }

    #[test]
    fn stale_append_does_not_truncate_newer_entries() {
        let mut log = log_with(&[1, 1, 1]);
        let m = log.try_append(LogId::new(0, 0), vec![entry(1, 1)]).unwrap();
        assert_eq!(m, LogIndex(1));
        assert_eq!(log.last_index(), LogIndex(3));
    }

    #[test]
    #[should_panic(expected = "truncating committed")]
    fn never_truncates_committed_entries() {
        let mut log = log_with(&[1, 1]);
        log.commit_to(LogIndex(2));
        let _ = log.try_append(LogId::new(1, 1), vec![entry(2, 2)]);
    }

    #[test]
    fn compaction_keeps_terms_and_membership() {
        let mut log = log_with(&[1, 1, 2, 2]);
        log.commit_to(LogIndex(4));
        log.take_committed();
        let m = Membership::new([NodeId(1), NodeId(2)]);
        log.append(Term(2), Payload::config(m.clone()));
        let snap = log.compact(LogIndex(3), Bytes::from_static(b"s"));
        assert_eq!(snap.meta.last, LogId::new(2, 3));
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.slice(LogIndex(3), 10, 1000), None);
        assert_eq!(log.membership(), &m);
    }

    #[test]
    fn install_discards_the_log() {
        let mut log = log_with(&[1, 1, 1]);
        log.install(Snapshot {
            meta: SnapshotMeta {
                last: LogId::new(2, 5),
                membership: Membership::new([NodeId(1)]),
            },
            data: Bytes::new(),
        });
        assert_eq!(log.last_id(), LogId::new(2, 5));
        assert_eq!(log.committed(), LogIndex(5));
        assert_eq!(log.applied(), LogIndex(5));
        assert!(log.take_committed().is_empty());
    }

    /// Found by the peer_message fuzz target: installing a snapshot below
    /// the last persisted entry left the next unpersisted index past the
    /// new end of the log, so a node that then led appended its NO-OP
    /// there and never handed it out to persist (committing and applying
    /// it on a disk that lacked it, or stopping when storage refused the
    /// gap).
    #[test]
    fn an_entry_appended_after_a_shorter_snapshot_is_persisted() {
        let mut log = log_with(&[1, 1, 2, 2, 2]);
        log.take_unstable();
        log.install(Snapshot {
            meta: SnapshotMeta {
                last: LogId::new(3, 4),
                membership: Membership::new([NodeId(0)]),
            },
            data: Bytes::new(),
        });
        let noop = log.append(Term(4), Payload::Noop);
        assert_eq!(noop, LogId::new(4, 5));
        let unstable: Vec<LogId> = log.take_unstable().iter().map(|e| e.id).collect();
        assert_eq!(unstable, [noop]);
    }
}
