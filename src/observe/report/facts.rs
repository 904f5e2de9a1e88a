//! What the report keeps about a group of handshakes (one client address,
//! or one client kind): counts, first and last seen, and bounded lists of
//! the values seen (versions, listeners, certificates, Hosts, reasons).

use std::borrow::Cow;

use super::snapshot::{CertificateSeen, Counted, HostSeen, Listed, ReasonSeen};
use super::{clip, format_ts, HandshakeEvent, RequestEvent, MAX_VALUE_BYTES};
use crate::observe::outcome::HandshakeOutcome;

/// A bounded list of distinct values with their counts.
#[derive(Debug)]
pub(super) struct Tally<K, V = u64> {
    pub items: Vec<(K, V)>,
    pub more: u64,
}

impl<K, V> Default for Tally<K, V> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            more: 0,
        }
    }
}

impl<K, V: Default> Tally<K, V> {
    /// The counts of the value `is` matches, added (`make`) when there is
    /// room; `None` (and counted in `more`) when there is not.
    pub(super) fn entry(
        &mut self,
        limit: usize,
        is: impl Fn(&K) -> bool,
        make: impl FnOnce() -> K,
    ) -> Option<&mut V> {
        match self.items.iter().position(|(k, _)| is(k)) {
            Some(i) => Some(&mut self.items[i].1),
            None if self.items.len() < limit => {
                self.items.push((make(), V::default()));
                self.items.last_mut().map(|(_, v)| v)
            }
            None => {
                self.more += 1;
                None
            }
        }
    }
}

impl Tally<String> {
    pub(super) fn add(&mut self, limit: usize, value: &str) {
        let value = clip(value, MAX_VALUE_BYTES);
        if let Some(n) = self.entry(limit, |k| *k == value, || value.to_string()) {
            *n += 1;
        }
    }

    pub(super) fn listed(&self) -> Listed<Counted> {
        listed(self, |(value, count)| Counted {
            value: value.clone(),
            count: *count,
        })
    }
}

/// `tally` as a sorted list (highest count first, then by value).
pub(super) fn listed<K, V, T>(tally: &Tally<K, V>, item: impl Fn(&(K, V)) -> T) -> Listed<T>
where
    T: SortKey,
{
    let mut items: Vec<T> = tally.items.iter().map(item).collect();
    items.sort_by(|a, b| {
        b.count()
            .cmp(&a.count())
            .then_with(|| a.name().cmp(&b.name()))
    });
    Listed {
        items,
        more: tally.more,
    }
}

pub(super) trait SortKey {
    fn count(&self) -> u64;
    fn name(&self) -> (&str, &str);
}

impl SortKey for Counted {
    fn count(&self) -> u64 {
        self.count
    }
    fn name(&self) -> (&str, &str) {
        (&self.value, "")
    }
}

impl SortKey for CertificateSeen {
    fn count(&self) -> u64 {
        self.count
    }
    fn name(&self) -> (&str, &str) {
        (&self.name, if self.fallback { "1" } else { "0" })
    }
}

impl SortKey for HostSeen {
    fn count(&self) -> u64 {
        self.requests
    }
    fn name(&self) -> (&str, &str) {
        (&self.host, "")
    }
}

impl SortKey for ReasonSeen {
    fn count(&self) -> u64 {
        self.count
    }
    fn name(&self) -> (&str, &str) {
        (&self.reason, self.hint.as_deref().unwrap_or(""))
    }
}

#[derive(Debug, Default)]
pub(super) struct HostCounts {
    requests: u64,
    covered: u64,
    uncovered: u64,
}

/// Counts and bounded lists over a group of handshakes and the requests
/// joined to them.
#[derive(Debug, Default)]
pub(super) struct Facts {
    pub handshakes: u64,
    pub ok: u64,
    pub failed: u64,
    pub no_sni: u64,
    pub requests: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub outcomes: Tally<String>,
    pub offered_versions: Tally<String>,
    pub versions: Tally<String>,
    pub listeners: Tally<String>,
    pub certificates: Tally<(String, bool)>,
    pub hosts: Tally<String, HostCounts>,
    pub reasons: Tally<(String, Option<String>)>,
}

/// Outcome names kept per group (snigate writes five).
const OUTCOME_NAMES: usize = 8;

impl Facts {
    fn seen(&mut self, ts: Option<u64>) {
        if let Some(ts) = ts {
            self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
            self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
        }
    }

    pub(super) fn handshake(&mut self, limit: usize, ev: &HandshakeEvent<'_>, ts: Option<u64>) {
        self.handshakes += 1;
        if ev.succeeded() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.no_sni += u64::from(ev.sni.is_none());
        self.seen(ts);
        self.outcomes.add(OUTCOME_NAMES, ev.outcome.name());
        for v in ev.offered_versions {
            self.offered_versions.add(limit, v);
        }
        if let Some(v) = ev.version {
            self.versions.add(limit, v);
        }
        self.listeners.add(limit, ev.listener);
        if let Some(name) = ev.certificate {
            let name = clip(name, MAX_VALUE_BYTES);
            let fallback = ev.fallback;
            let is = |(n, f): &(String, bool)| *n == name && *f == fallback;
            if let Some(n) = self
                .certificates
                .entry(limit, is, || (name.to_string(), fallback))
            {
                *n += 1;
            }
        }
        let keep_reason = !ev.succeeded() || ev.is(HandshakeOutcome::LegacyPassthrough);
        if let (true, Some(reason)) = (keep_reason, ev.reason) {
            let reason = clip(reason, MAX_VALUE_BYTES);
            let hint = ev.hint.map(|h| clip(h, MAX_VALUE_BYTES));
            let is =
                |(r, h): &(String, Option<String>)| *r == reason && h.as_deref() == hint.as_deref();
            let make = || (reason.to_string(), hint.as_ref().map(|h| h.to_string()));
            if let Some(n) = self.reasons.entry(limit, is, make) {
                *n += 1;
            }
        }
    }

    pub(super) fn request(&mut self, limit: usize, ev: &RequestEvent<'_>, ts: Option<u64>) {
        self.requests += 1;
        self.seen(ts);
        if let Some(host) = ev.host {
            let host: Cow<'_, str> = clip(host, MAX_VALUE_BYTES);
            if let Some(h) = self.hosts.entry(limit, |k| *k == host, || host.to_string()) {
                h.requests += 1;
                match ev.covered {
                    Some(true) => h.covered += 1,
                    Some(false) => h.uncovered += 1,
                    None => {}
                }
            }
        }
    }

    pub(super) fn first_seen(&self) -> Option<String> {
        self.first.map(format_ts)
    }

    pub(super) fn last_seen(&self) -> Option<String> {
        self.last.map(format_ts)
    }

    pub(super) fn certificates(&self) -> Listed<CertificateSeen> {
        listed(&self.certificates, |((name, fallback), count)| {
            CertificateSeen {
                name: name.clone(),
                fallback: *fallback,
                count: *count,
            }
        })
    }

    pub(super) fn hosts(&self) -> Listed<HostSeen> {
        listed(&self.hosts, |(host, c)| HostSeen {
            host: host.clone(),
            requests: c.requests,
            covered: match (c.uncovered, c.covered) {
                (0, 0) => None,
                (0, _) => Some(true),
                _ => Some(false),
            },
            uncovered: c.uncovered,
        })
    }

    pub(super) fn reasons(&self) -> Listed<ReasonSeen> {
        listed(&self.reasons, |((reason, hint), count)| ReasonSeen {
            reason: reason.clone(),
            hint: hint.clone(),
            count: *count,
        })
    }
}
