//! Keys, values and deadlines, with an index of deadlines for the sweep.
//!
//! Both maps are ordered so that iteration, and so the snapshot encoding and
//! the order in which the sweep removes keys, is the same on every replica.
//! Every operation is O(log n). They are persistent B-trees (`imbl`'s
//! `OrdMap`/`OrdSet`, structurally shared): a clone costs O(1) whatever the
//! size, so the node loop copies a million keys for a snapshot in
//! microseconds and encodes the copy on another thread (a `BTreeMap` clone
//! of 110,000 keys took 14–228 ms on the loop under load, past the lease's
//! margin; see docs/performance.md). Writes after a clone copy only the
//! nodes on their path.

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};

/// One stored value and its expiry deadline (state-machine milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub value: Bytes,
    pub deadline: Option<u64>,
}

impl Item {
    /// A key is absent from the moment its deadline is reached.
    pub fn live_at(&self, t: u64) -> bool {
        self.deadline.is_none_or(|d| d > t)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Store {
    data: OrdMap<Bytes, Item>,
    /// `(deadline, key)` for every item with a deadline: the sweep pops the
    /// earliest deadlines without scanning the whole key space.
    expiry: OrdSet<(u64, Bytes)>,
}

impl Store {
    /// The item under `key` if it has not expired at time `t`.
    pub fn live(&self, key: &[u8], t: u64) -> Option<&Item> {
        self.data.get(key).filter(|item| item.live_at(t))
    }

    /// Removes `key` if its deadline has passed at `t` (the lazy half of
    /// expiry), so a write never sees or resurrects an expired value.
    pub fn expire_if_due(&mut self, key: &[u8], t: u64) {
        if self.data.get(key).is_some_and(|item| !item.live_at(t)) {
            self.remove(key);
        }
    }

    /// Stores `item` under `key`, replacing any previous item and deadline.
    ///
    /// One lookup when the key exists (the item is replaced in place and the
    /// stored key kept), and a key is cloned only for a deadline: this runs
    /// on every SET, on every replica (docs/performance.md, "Where the CPU
    /// goes").
    pub fn insert(&mut self, key: Bytes, item: Item) {
        if let Some((stored, slot)) = self.data.get_key_value_mut(&key) {
            let old = std::mem::replace(slot, item);
            let new_deadline = slot.deadline;
            if old.deadline != new_deadline {
                if let Some(d) = old.deadline {
                    self.expiry.remove(&(d, stored.clone()));
                }
                if let Some(d) = new_deadline {
                    self.expiry.insert((d, stored.clone()));
                }
            }
            return;
        }
        if let Some(deadline) = item.deadline {
            self.expiry.insert((deadline, key.clone()));
        }
        self.data.insert(key, item);
    }

    /// Removes `key`, returning its item.
    pub fn remove(&mut self, key: &[u8]) -> Option<Item> {
        let (key, item) = self.data.remove_with_key(key)?;
        if let Some(deadline) = item.deadline {
            self.expiry.remove(&(deadline, key));
        }
        Some(item)
    }

    /// Removes up to `max` items whose deadline is at or before `t`, earliest
    /// first; returns how many it removed. Bounded so that one entry never
    /// stalls apply when many keys expire together; the remainder is swept by
    /// the following entries (and reads treat them as absent meanwhile).
    pub fn sweep(&mut self, t: u64, max: usize) -> usize {
        let mut removed = 0;
        while removed < max {
            match self.expiry.get_min() {
                Some((deadline, _)) if *deadline <= t => {
                    let (_, key) = self.expiry.remove_min().expect("get_min() was Some");
                    self.data.remove(&key);
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// Whether any stored key has a deadline.
    pub fn has_deadlines(&self) -> bool {
        !self.expiry.is_empty()
    }

    /// Number of stored keys, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Checks that the deadline index lists exactly the items' deadlines
    /// (the sweep trusts it to find every key that expires).
    pub fn check_invariants(&self) -> Result<(), String> {
        let deadlines: OrdSet<(u64, Bytes)> = self
            .data
            .iter()
            .filter_map(|(key, item)| item.deadline.map(|d| (d, key.clone())))
            .collect();
        if deadlines != self.expiry {
            return Err("the expiry index does not list exactly the keys' deadlines".into());
        }
        Ok(())
    }

    /// Items in key order (for the snapshot).
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Item)> {
        self.data.iter()
    }
}

impl Store {
    /// Items whose key starts with `prefix`, in key order, from just after
    /// `after` (from the prefix's first key when `after` is `None`),
    /// expired ones included (range reads filter them at their time).
    pub fn prefixed<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a Item)> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.data
            .range::<_, [u8]>((start, Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }
}
