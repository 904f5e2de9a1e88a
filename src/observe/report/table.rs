//! A bounded table of entries (clients, client kinds) addressed by key,
//! with slots a handle can point at.
//!
//! Eviction policy: sampled least-frequently-used. When the table is full
//! and a new key arrives, [`SAMPLE`] entries picked at random are compared
//! and the one ranked lowest (fewest handshakes; ties: seen least
//! recently) is handed back to the caller to fold into its `other` bucket,
//! and its slot is reused. This costs O(1) per event whatever the table
//! size, and keeps frequent entries: an entry is evicted only when it is
//! the least frequent of its sample, which for an entry with many
//! handshakes does not happen while the table also holds one-off entries (a
//! flood of random peers only ever evicts its own members). Rejected
//! alternatives: an exact minimum (a heap updated on every count change
//! costs O(log n) per event); the space-saving algorithm (a newcomer
//! inherits the evicted count, so the counts shown would no longer be the
//! entry's own). The random numbers come from a fixed-seed generator, so
//! the same events in the same order give the same table, live or offline.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use crate::sync::ClientKeyHasher;

/// Entries compared to choose one to evict.
const SAMPLE: usize = 8;

/// What eviction compares: lower is evicted first.
pub(super) trait Ranked {
    fn rank(&self) -> (u64, u64);
}

struct Slot<K, V> {
    /// Bumped whenever the slot gets another entry, so that a handle to the
    /// evicted one no longer matches.
    generation: u32,
    key: K,
    value: V,
}

/// Where an entry lives: its slot and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Place {
    pub slot: u32,
    pub generation: u32,
}

/// The bounded table.
pub(super) struct Table<K, V> {
    limit: usize,
    index: HashMap<K, u32, ClientKeyHasher>,
    slots: Vec<Slot<K, V>>,
    rng: u64,
}

impl<K: Clone + Eq + Hash, V: Ranked> Table<K, V> {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            index: HashMap::default(),
            slots: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The entry of `key` (looked up as any form `K` borrows as), made
    /// with `make_key` and `make` when there is none; with the entry it
    /// evicted to make room, if any.
    pub(super) fn entry<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        make: impl FnOnce() -> V,
    ) -> (Place, &mut V, Option<(K, V)>)
    where
        K: Borrow<Q>,
    {
        let (pos, evicted) = match self.index.get(key) {
            Some(&pos) => (pos, None),
            None => self.insert(make_key(), make()),
        };
        let slot = &mut self.slots[pos as usize];
        let place = Place {
            slot: pos,
            generation: slot.generation,
        };
        (place, &mut slot.value, evicted)
    }

    /// The entry at `place`, unless it was evicted since.
    pub(super) fn get_mut(&mut self, place: Place) -> Option<&mut V> {
        match self.slots.get_mut(place.slot as usize) {
            Some(slot) if slot.generation == place.generation => Some(&mut slot.value),
            _ => None,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().map(|s| (&s.key, &s.value))
    }

    fn insert(&mut self, key: K, value: V) -> (u32, Option<(K, V)>) {
        if self.slots.len() < self.limit {
            let pos = self.slots.len() as u32;
            self.index.insert(key.clone(), pos);
            self.slots.push(Slot {
                generation: 0,
                key,
                value,
            });
            return (pos, None);
        }
        let pos = self.victim();
        self.index.insert(key.clone(), pos as u32);
        let slot = &mut self.slots[pos];
        slot.generation = slot.generation.wrapping_add(1);
        let old_key = std::mem::replace(&mut slot.key, key);
        let old_value = std::mem::replace(&mut slot.value, value);
        self.index.remove(&old_key);
        (pos as u32, Some((old_key, old_value)))
    }

    /// The slot to reuse: the lowest ranked of a random sample (see the
    /// module comment), or of all slots when there are few.
    fn victim(&mut self) -> usize {
        let n = self.slots.len();
        let rank = |s: &Slot<K, V>| s.value.rank();
        if n <= SAMPLE {
            return (0..n).min_by_key(|&i| rank(&self.slots[i])).unwrap_or(0);
        }
        let mut best = self.next_random() % n;
        for _ in 1..SAMPLE {
            let i = self.next_random() % n;
            if rank(&self.slots[i]) < rank(&self.slots[best]) {
                best = i;
            }
        }
        best
    }

    /// xorshift64*: fast, deterministic, good enough to pick a sample.
    fn next_random(&mut self) -> usize {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize
    }
}
