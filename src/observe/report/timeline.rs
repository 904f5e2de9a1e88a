//! Handshakes over time: a fixed ring of buckets.
//!
//! A bucket is kept while it lies within the `buckets` most recent bucket
//! widths of the newest timestamp seen; events older than that are dropped.
//! Which buckets survive depends only on the set of timestamps, not on the
//! order they arrive in, so live and offline (where log files are merged)
//! give the same timeline.

use std::time::Duration;

use super::snapshot::{Bucket, Timeline};

/// Which bar of the chart a handshake adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    SniOk,
    NoSniOk,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// `ts / width` of the bucket this slot holds; `u64::MAX` when unused.
    index: u64,
    sni_ok: u64,
    no_sni_ok: u64,
    failed: u64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        index: u64::MAX,
        sni_ok: 0,
        no_sni_ok: 0,
        failed: 0,
    };
}

#[derive(Clone)]
pub(super) struct Ring {
    width_ms: u64,
    slots: Vec<Slot>,
    newest: Option<u64>,
}

impl Ring {
    pub(super) fn new(width: Duration, buckets: usize) -> Self {
        Self {
            width_ms: u64::try_from(width.as_millis()).unwrap_or(u64::MAX).max(1),
            slots: vec![Slot::EMPTY; buckets.max(1)],
            newest: None,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Whether bucket `index` lies in the window that ends at `newest`.
    fn in_window(&self, index: u64, newest: u64) -> bool {
        index <= newest && newest - index < self.len()
    }

    pub(super) fn add(&mut self, ts_ms: u64, kind: Kind) {
        let index = ts_ms / self.width_ms;
        let newest = match self.newest {
            Some(n) if index <= n => n,
            _ => index,
        };
        if !self.in_window(index, newest) {
            return;
        }
        self.newest = Some(newest);
        let pos = (index % self.len()) as usize;
        let slot = &mut self.slots[pos];
        // A slot holding another index holds one that is now out of the
        // window (any two indexes in the window differ by less than `len`).
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::EMPTY
            };
        }
        match kind {
            Kind::SniOk => slot.sni_ok += 1,
            Kind::NoSniOk => slot.no_sni_ok += 1,
            Kind::Failed => slot.failed += 1,
        }
    }

    /// The buckets in the window that saw a handshake, oldest first.
    pub(super) fn snapshot(&self) -> Timeline {
        let mut buckets: Vec<(u64, Bucket)> = match self.newest {
            None => Vec::new(),
            Some(newest) => self
                .slots
                .iter()
                .filter(|s| s.index != u64::MAX && self.in_window(s.index, newest))
                .map(|s| {
                    let start = s.index.saturating_mul(self.width_ms);
                    let bucket = Bucket {
                        start: super::format_ts(start),
                        sni_ok: s.sni_ok,
                        no_sni_ok: s.no_sni_ok,
                        failed: s.failed,
                    };
                    (s.index, bucket)
                })
                .collect(),
        };
        buckets.sort_by_key(|(i, _)| *i);
        Timeline {
            bucket_ms: self.width_ms,
            buckets: buckets.into_iter().map(|(_, b)| b).collect(),
        }
    }
}
