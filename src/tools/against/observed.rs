//! The client kinds the handshake logs (or documents saved from `GET
//! /report/hellos`) saw, in the table the live report keeps too
//! ([`HellosSeen`]): by listener, hello and SNI, with today's outcomes,
//! handshakes and distinct addresses, and the hello details. Every line
//! and document is hostile input: the table bounds what it keeps, and a
//! line that does not parse is counted and skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::observe::hello_details::{HelloDetails, HelloId};
use crate::observe::hellos_seen::{HellosSeen, SeenDocument, SeenHandshake, SeenLimits};
use crate::observe::log_lines::{self, LogFile, LogLine};
use crate::observe::outcome::HandshakeOutcome;

/// How much of a file is read to tell a saved document from a log.
const SNIFF_BYTES: u64 = 4096;

/// The largest saved document read (the live report's is at most a few MiB).
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Everything read from the logs and documents.
#[derive(Debug)]
pub struct ObservedLogs {
    pub seen: HellosSeen,
    /// Log lines read, and of those skipped (not JSON, too long, not a
    /// handshake line of a hello); a document's kinds that were not ones
    /// snigate writes are counted as skipped lines too.
    pub lines: u64,
    pub skipped: u64,
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

/// Reads every file in `paths`: handshake logs (other lines are skipped)
/// or documents saved from `GET /report/hellos`.
pub fn read(paths: &[PathBuf]) -> anyhow::Result<ObservedLogs> {
    let mut logs = ObservedLogs {
        seen: HellosSeen::new(SeenLimits::OFFLINE),
        lines: 0,
        skipped: 0,
    };
    for path in paths {
        match saved_document(path)? {
            Some(doc) => logs.skipped += logs.seen.merge(doc),
            None => logs.read_file(path)?,
        }
    }
    Ok(logs)
}

/// The document `path` holds, or `None` when it does not start as one
/// (a log file, read line by line afterwards: only its first bytes are
/// read here). A file that starts as one but does not parse is an error.
fn saved_document(path: &Path) -> anyhow::Result<Option<SeenDocument>> {
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let mark = format!(
        "{{\"document\":\"{}\"",
        crate::observe::hellos_seen::DOCUMENT_MARK
    );
    let mut head = Vec::new();
    open()?
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    if !head.trim_ascii_start().starts_with(mark.as_bytes()) {
        return Ok(None);
    }
    let mut text = Vec::new();
    open()?
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_DOCUMENT_BYTES,
        "{}: a saved /report/hellos larger than {} MiB",
        path.display(),
        MAX_DOCUMENT_BYTES >> 20
    );
    let doc = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a document of GET /report/hellos", path.display()))?;
    Ok(Some(doc))
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
        if line.event != "tls_handshake" {
            return false;
        }
        let id = line.hello_id.as_deref().and_then(HelloId::parse);
        if let (Some(id), Some(details)) = (id, line.hello) {
            if let Ok(details) = serde_json::from_value::<HelloDetails>(details) {
                self.seen.keep_details(id, details);
            }
        }
        self.seen.add(&SeenHandshake {
            listener: &line.listener,
            // A peer that is not an address counts as the unspecified one.
            peer: log_lines::peer_ip(&line.peer)
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            sni: line.sni.as_deref(),
            ja4: &line.ja4,
            outcome,
            reason: line.reason.as_deref(),
            hello: id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(logs.seen.kinds.len(), 1);
        assert!(
            logs.seen.details.is_empty(),
            "malformed details are not kept"
        );
    }
}
