//! The client kinds the handshake logs saw: lines grouped by listener,
//! hello (its `hello_id`, or its JA4 on lines written before there was
//! one) and SNI, with today's outcomes, handshakes and distinct addresses,
//! and the hello details the logs hold. Every line is hostile input: lines,
//! strings, kinds, addresses and details are all bounded, and a line that
//! does not parse is counted and skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::observe::log_lines::{self, LogFile, LogLine};

use crate::observe::hello_details::{HelloDetails, HelloId};
use crate::observe::outcome::HandshakeOutcome;

/// Kinds kept, over all listeners; handshakes of further kinds are counted
/// per listener as `more`.
pub const MAX_KINDS: usize = 10_000;
/// Addresses remembered, over all kinds; beyond, counts are lower bounds.
pub const MAX_ADDRESSES: usize = 1_000_000;
/// Values of hello details kept (a real hello has a few hundred).
pub const MAX_DETAIL_VALUES: usize = 4_000_000;
/// Longest listener name, SNI, JA4 or reason kept (longer are cut).
const MAX_TEXT: usize = 512;

/// How a kind's hello is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HelloKey {
    /// By its `hello_id`.
    Id(HelloId),
    /// A line without `hello_id` (written by an older snigate): its JA4.
    Ja4(String),
}

/// What is grouped together: one listener, one hello, one SNI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindKey {
    pub listener: String,
    pub hello: HelloKey,
    pub sni: Option<String>,
}

/// One kind as the logs saw it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub ja4: String,
    /// Handshakes per outcome.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// The reason of the last failed handshake.
    pub reason: Option<String>,
    pub handshakes: u64,
    /// Distinct peer addresses (IP, no port).
    pub addresses: HashSet<IpAddr>,
    /// Some addresses were not remembered ([`MAX_ADDRESSES`]).
    pub addresses_capped: bool,
}

impl Observed {
    /// The outcome most of its handshakes had (ties: the first by name).
    pub fn main_outcome(&self) -> Option<&'static str> {
        let mut best: Option<(&'static str, u64)> = None;
        for (name, n) in &self.outcomes {
            if best.is_none_or(|(_, b)| *n > b) {
                best = Some((name, *n));
            }
        }
        best.map(|(name, _)| name)
    }
}

/// Handshakes of one listener.
#[derive(Debug, Clone, Default)]
pub struct ListenerTotals {
    pub handshakes: u64,
    /// Handshakes of kinds beyond [`MAX_KINDS`].
    pub more: u64,
}

/// Everything read from the logs.
#[derive(Debug, Default)]
pub struct ObservedLogs {
    pub kinds: HashMap<KindKey, Observed>,
    pub listeners: BTreeMap<String, ListenerTotals>,
    pub details: HashMap<HelloId, HelloDetails>,
    /// Lines read, and of those skipped (not JSON, too long, not a
    /// handshake line of a hello).
    pub lines: u64,
    pub skipped: u64,
    addresses: usize,
    detail_values: usize,
}

/// A handshake-log line: the fields `--against` reads.
#[derive(Deserialize)]
struct Line {
    event: String,
    #[serde(default)]
    listener: String,
    #[serde(default)]
    peer: String,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    ja4: String,
    outcome: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    hello_id: Option<String>,
    #[serde(default)]
    hello: Option<serde_json::Value>,
}

/// Reads every file in `paths` (handshake lines; other lines are skipped).
pub fn read(paths: &[PathBuf]) -> anyhow::Result<ObservedLogs> {
    let mut logs = ObservedLogs::default();
    for path in paths {
        logs.read_file(path)?;
    }
    Ok(logs)
}

impl ObservedLogs {
    fn read_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let mut file = LogFile::open(path)?;
        while let Some(line) = file.next_line()? {
            self.lines += 1;
            let added = match line {
                LogLine::Text(text) => {
                    serde_json::from_slice::<Line>(text).is_ok_and(|line| self.add(line))
                }
                LogLine::TooLong => false,
            };
            if !added {
                self.skipped += 1;
            }
        }
        Ok(())
    }

    /// Adds a line; `false` when it is not a handshake line of a hello.
    fn add(&mut self, line: Line) -> bool {
        let Some(outcome) = HandshakeOutcome::from_name(&line.outcome) else {
            return false;
        };
        let id = line.hello_id.as_deref().and_then(HelloId::parse);
        if line.event != "tls_handshake" || (id.is_none() && line.ja4.is_empty()) {
            // Not a hello (bytes that were not TLS, a bad PROXY header).
            return false;
        }
        if let (Some(id), Some(details)) = (id, line.hello) {
            self.keep_details(id, details);
        }
        let listener = clip(line.listener);
        let totals = self.listeners.entry(listener.clone()).or_default();
        totals.handshakes += 1;
        let key = KindKey {
            listener,
            hello: match id {
                Some(id) => HelloKey::Id(id),
                None => HelloKey::Ja4(clip(line.ja4.clone())),
            },
            sni: line.sni.map(clip),
        };
        if !self.kinds.contains_key(&key) && self.kinds.len() >= MAX_KINDS {
            totals.more += 1;
            return true;
        }
        let kind = self.kinds.entry(key).or_default();
        if kind.ja4.is_empty() {
            kind.ja4 = clip(line.ja4);
        }
        kind.handshakes += 1;
        *kind.outcomes.entry(outcome.as_str()).or_default() += 1;
        if outcome == HandshakeOutcome::Failed {
            kind.reason = line.reason.map(clip);
        }
        let ip = peer_ip(&line.peer);
        if !kind.addresses.contains(&ip) {
            if self.addresses < MAX_ADDRESSES {
                kind.addresses.insert(ip);
                self.addresses += 1;
            } else {
                kind.addresses_capped = true;
            }
        }
        true
    }

    /// Keeps the details of `id` (the first valid ones, within the budget).
    fn keep_details(&mut self, id: HelloId, details: serde_json::Value) {
        if self.details.contains_key(&id) {
            return;
        }
        let Ok(details) = serde_json::from_value::<HelloDetails>(details) else {
            return;
        };
        // Details that do not hash to their id were not written by snigate.
        if !details.within_bounds() || details.id() != id {
            return;
        }
        let size = details.size();
        if self.detail_values + size <= MAX_DETAIL_VALUES {
            self.detail_values += size;
            self.details.insert(id, details);
        }
    }
}

/// The IP of `peer`; a peer that is not an address counts as the
/// unspecified one.
fn peer_ip(peer: &str) -> IpAddr {
    log_lines::peer_ip(peer).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// `text`, cut to [`MAX_TEXT`] bytes at a character boundary.
fn clip(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_clipping() {
        assert_eq!(peer_ip("192.0.2.7:50000").to_string(), "192.0.2.7");
        assert_eq!(peer_ip("[2001:db8::1]:443").to_string(), "2001:db8::1");
        assert_eq!(peer_ip("garbage").to_string(), "0.0.0.0");
        let long = "é".repeat(MAX_TEXT);
        assert!(clip(long).len() <= MAX_TEXT);
    }

    #[test]
    fn hostile_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let long = format!(
            "{{\"x\":\"{}\"}}\n",
            "a".repeat(log_lines::MAX_LINE_BYTES as usize + 10)
        );
        let text = [
            "not json\n",
            long.as_str(),
            r#"{"event":"tls_handshake","listener":"main","peer":"1.2.3.4:5","sni":null,"ja4":"t12i","outcome":"ok","hello_id":"00000000000000ff","hello":{"sslv2":"yes"}}"#,
            "\n",
            r#"{"event":"tls_handshake","listener":"main","peer":"1.2.3.4:5","sni":null,"ja4":"","outcome":"rejected"}"#,
            "\n",
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let logs = read(&[path]).unwrap();
        assert_eq!(logs.lines, 4);
        assert_eq!(logs.skipped, 3);
        assert_eq!(logs.kinds.len(), 1);
        assert!(logs.details.is_empty(), "malformed details are not kept");
    }
}
