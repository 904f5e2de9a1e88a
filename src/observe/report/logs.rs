//! The report offline, from the JSON-lines logs (`snigate report LOG...`).
//!
//! The files may hold handshake lines, access lines or both, be rotated
//! pieces of one log, and be named in any order: they are merged by line
//! timestamp (a k-way merge, one line per file in memory), handshake lines
//! first on equal timestamps. That puts each access line after the
//! handshake line of its connection (a request starts after its handshake
//! line was written) and lets a connection id reused by a later run of the
//! proxy map to the later handshake. Lines are then fed to the same
//! aggregation as the live proxy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::snapshot::{LogInput, ReportSnapshot};
use crate::observe::log_lines::{LogFile, LogLine};

use super::{
    parse_ts, ClientRef, EventOutcome, HandshakeEvent, Peer, Report, ReportLimits, RequestEvent,
};

/// Connections whose handshake mapping is kept for joining access lines:
/// the most recent ones. Far more than a proxy has open at once, so only
/// access lines of connections that stayed open across this many newer
/// tracked connections go unjoined.
const CONNECTIONS_KEPT: usize = 100_000;

/// A handshake-log line (fields the report uses; others are ignored).
#[derive(Deserialize)]
struct HandshakeLine {
    ts: String,
    conn: u64,
    #[serde(default)]
    listener: String,
    peer: String,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    fallback: bool,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    offered_versions: Vec<String>,
    #[serde(default)]
    ja4: String,
    outcome: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    hint: Option<String>,
}

/// An access-log line (fields the report uses).
#[derive(Deserialize)]
struct RequestLine {
    ts: String,
    conn: u64,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    covered: Option<bool>,
}

#[derive(Deserialize)]
#[serde(tag = "event")]
enum Line {
    #[serde(rename = "tls_handshake")]
    Handshake(HandshakeLine),
    #[serde(rename = "http_request")]
    Request(RequestLine),
}

impl Line {
    fn ts(&self) -> &str {
        match self {
            Line::Handshake(h) => &h.ts,
            Line::Request(r) => &r.ts,
        }
    }

    /// Handshake lines sort before access lines of the same millisecond.
    fn rank(&self) -> u8 {
        match self {
            Line::Handshake(_) => 0,
            Line::Request(_) => 1,
        }
    }
}

/// One log file being read.
struct Source {
    file: LogFile,
    /// Timestamp of the last line with one: the merge key of a line whose
    /// own timestamp does not parse.
    last_ts: u64,
}

impl Source {
    /// The next line of a kind the report reads, or `None` at the end.
    fn next(&mut self, input: &mut LogInput) -> anyhow::Result<Option<(u64, Line)>> {
        while let Some(line) = self.file.next_line()? {
            input.lines += 1;
            let parsed = match line {
                LogLine::Text(text) => serde_json::from_slice::<Line>(text).ok(),
                LogLine::TooLong => None,
            };
            match parsed {
                Some(line) => {
                    if let Some(ts) = parse_ts(line.ts()) {
                        self.last_ts = ts;
                    }
                    return Ok(Some((self.last_ts, line)));
                }
                None => input.skipped += 1,
            }
        }
        Ok(None)
    }
}

/// Connections with a report handle by id, the most recent
/// [`CONNECTIONS_KEPT`] (a handle let go joins its kind without a
/// User-Agent if it had no request).
#[derive(Default)]
struct Connections {
    by_id: HashMap<u64, (u64, ClientRef)>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
}

impl Connections {
    fn set(&mut self, conn: u64, client: Option<ClientRef>) {
        let Some(client) = client else {
            // A later connection with this id that takes no requests: the
            // earlier mapping must not catch them.
            self.by_id.remove(&conn);
            return;
        };
        self.seq += 1;
        self.by_id.insert(conn, (self.seq, client));
        self.order.push_back((conn, self.seq));
        while self.order.len() > CONNECTIONS_KEPT {
            if let Some((old, seq)) = self.order.pop_front() {
                if self.by_id.get(&old).is_some_and(|(s, _)| *s == seq) {
                    self.by_id.remove(&old);
                }
            }
        }
    }

    fn get(&self, conn: u64) -> Option<&ClientRef> {
        self.by_id.get(&conn).map(|(_, c)| c)
    }
}

/// Offline: reads handshake and access JSON-lines logs (any mix, files in
/// any order; lines of other kinds or unparsable lines are counted and
/// skipped), aggregates them with the same code as live, and returns the
/// same snapshot (plus `input`, what was read).
pub fn from_logs(paths: &[PathBuf], limits: ReportLimits) -> anyhow::Result<ReportSnapshot> {
    let report = Report::new(limits);
    let mut input = LogInput {
        files: paths.len() as u64,
        ..LogInput::default()
    };
    let mut sources = paths
        .iter()
        .map(|p| open(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Min-heap of (timestamp, kind rank, file) holding each file's next line.
    let mut heads: Vec<Option<Line>> = Vec::with_capacity(sources.len());
    let mut heap = BinaryHeap::new();
    for (i, source) in sources.iter_mut().enumerate() {
        let next = source.next(&mut input)?;
        if let Some((ts, line)) = &next {
            heap.push(Reverse((*ts, line.rank(), i)));
        }
        heads.push(next.map(|(_, l)| l));
    }
    let mut connections = Connections::default();
    while let Some(Reverse((_, _, i))) = heap.pop() {
        if let Some(line) = heads[i].take() {
            feed(&report, &mut connections, &mut input, &line);
        }
        if let Some((ts, line)) = sources[i].next(&mut input)? {
            heap.push(Reverse((ts, line.rank(), i)));
            heads[i] = Some(line);
        }
    }
    // Connections still open at the end of the logs join their kinds now.
    drop(connections);
    let mut snapshot = report.snapshot();
    snapshot.input = Some(input);
    Ok(snapshot)
}

fn open(path: &Path) -> anyhow::Result<Source> {
    Ok(Source {
        file: LogFile::open(path)?,
        last_ts: 0,
    })
}

fn feed(report: &Report, connections: &mut Connections, input: &mut LogInput, line: &Line) {
    match line {
        Line::Handshake(h) => {
            input.handshakes += 1;
            let offered: Vec<&str> = h.offered_versions.iter().map(String::as_str).collect();
            let ev = HandshakeEvent {
                ts: parse_ts(&h.ts),
                listener: &h.listener,
                peer: Peer::of_log(&h.peer),
                sni: h.sni.as_deref(),
                fallback: h.fallback,
                certificate: h.certificate.as_deref(),
                offered_versions: &offered,
                ja4: &h.ja4,
                outcome: EventOutcome::parse(&h.outcome),
                version: h.version.as_deref(),
                reason: h.reason.as_deref(),
                hint: h.hint.as_deref(),
            };
            connections.set(h.conn, report.handshake_event(&ev));
        }
        Line::Request(r) => {
            input.requests += 1;
            let ev = RequestEvent {
                ts: &r.ts,
                host: r.host.as_deref(),
                user_agent: r.user_agent.as_deref(),
                covered: r.covered,
            };
            match connections.get(r.conn) {
                Some(client) => report.request_event(client, &ev),
                None => input.requests_unjoined += 1,
            }
        }
    }
}
