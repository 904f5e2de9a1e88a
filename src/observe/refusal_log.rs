//! The human log's account of refused connections: one summary line per
//! interval and listener, with the count and the source refused most, never
//! a line per connection.
//!
//! Why: a client that opens 10,000 connections gets most of them refused,
//! and a line for each would flood the log (and the disk) in the very
//! moment the operator needs to read it. The first refusal after a quiet
//! interval is logged at once, so the operator learns of the problem
//! without delay; the refusals that follow within [`SUMMARY_INTERVAL`] are
//! added up and logged together when it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// At most one summary line per listener in this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Distinct sources counted per interval; refusals from further sources
/// count in the total only, so a flood from many addresses (a PROXY header
/// can name any) cannot grow the table.
const MAX_SOURCES: usize = 256;

/// What one summary line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Connections refused since the previous line.
    pub refused: u64,
    /// The source (IPv6: its /64) refused most, and how often.
    pub top_source: IpAddr,
    pub top_refused: u64,
    /// Distinct sources counted (at most [`MAX_SOURCES`]).
    pub sources: usize,
}

/// Refusals not logged yet, and when the last line was written.
#[derive(Debug, Default)]
pub struct Window {
    last_line: Option<Instant>,
    flush_due: Option<Instant>,
    refused: u64,
    by_source: HashMap<IpAddr, u64>,
}

/// What the caller does after recording a refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Log this summary now.
    Log(Summary),
    /// Call [`Window::flush`] at this instant (no flush was due yet).
    FlushAt(Instant),
    /// A flush is already due; nothing to do.
    Wait,
}

impl Window {
    /// Counts one refusal of `source` at `now`.
    pub fn record(&mut self, source: IpAddr, now: Instant) -> Next {
        self.refused += 1;
        if let Some(n) = self.by_source.get_mut(&source) {
            *n += 1;
        } else if self.by_source.len() < MAX_SOURCES {
            self.by_source.insert(source, 1);
        }
        match self.last_line {
            Some(last) if now.duration_since(last) < SUMMARY_INTERVAL => {
                if self.flush_due.is_some() {
                    Next::Wait
                } else {
                    let at = last + SUMMARY_INTERVAL;
                    self.flush_due = Some(at);
                    Next::FlushAt(at)
                }
            }
            _ => self.take(now).map_or(Next::Wait, Next::Log),
        }
    }

    /// The summary of the refusals counted since the last line, if any, at
    /// the end of an interval.
    pub fn flush(&mut self, now: Instant) -> Option<Summary> {
        self.flush_due = None;
        self.take(now)
    }

    fn take(&mut self, now: Instant) -> Option<Summary> {
        if self.refused == 0 {
            return None;
        }
        // Ties go to the smaller address, so a line does not depend on the
        // map's order.
        let (top_source, top_refused) = self
            .by_source
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(s, n)| (*s, *n))?;
        let summary = Summary {
            refused: self.refused,
            top_source,
            top_refused,
            sources: self.by_source.len(),
        };
        self.refused = 0;
        self.by_source.clear();
        self.last_line = Some(now);
        Some(summary)
    }
}

/// One listener's refusal log (it outlives a reload that keeps the
/// listener, so a reload does not reset the interval).
#[derive(Debug, Default)]
pub struct RefusalLog {
    window: Mutex<Window>,
}

impl RefusalLog {
    /// Counts a connection from `source` refused on `listener` because it
    /// already holds `limit` connections, and logs a summary when one is due.
    pub fn refused(self: &Arc<Self>, listener: &str, source: IpAddr, limit: usize) {
        let next = lock(&self.window).record(source, Instant::now());
        match next {
            Next::Log(s) => log(listener, &s, limit),
            Next::FlushAt(at) => {
                let (this, listener) = (self.clone(), listener.to_string());
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let summary = lock(&this.window).flush(Instant::now());
                    if let Some(s) = summary {
                        log(&listener, &s, limit);
                    }
                });
            }
            Next::Wait => {}
        }
    }
}

fn log(listener: &str, s: &Summary, limit: usize) {
    tracing::warn!(
        listener,
        refused = s.refused,
        top_source = %s.top_source,
        top_source_refused = s.top_refused,
        sources = s.sources,
        max_connections_per_ip = limit,
        "connections refused: their source already held max_connections_per_ip connections \
         (one such line per listener every {} s at most)",
        SUMMARY_INTERVAL.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_refusal_is_logged_at_once_and_the_rest_once_per_interval() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let Next::Log(first) = w.record(ip("10.0.0.1"), t0) else {
            panic!("first refusal not logged at once");
        };
        assert_eq!((first.refused, first.top_source), (1, ip("10.0.0.1")));
        // 999 more within the interval: one flush is asked for, no lines.
        let due = t0 + SUMMARY_INTERVAL;
        assert_eq!(w.record(ip("10.0.0.1"), t0), Next::FlushAt(due));
        for i in 0..998 {
            let src = if i % 3 == 0 { "10.0.0.2" } else { "10.0.0.1" };
            assert_eq!(w.record(ip(src), t0 + Duration::from_millis(5)), Next::Wait);
        }
        let s = w.flush(due).expect("a summary at the end of the interval");
        assert_eq!(s.refused, 999);
        assert_eq!(s.top_source, ip("10.0.0.1"));
        assert_eq!(s.top_refused, 999 - 333);
        assert_eq!(s.sources, 2);
        // Nothing left: the next flush has nothing to say.
        assert_eq!(w.flush(due), None);
        // A refusal a whole interval after the last line is logged at once.
        assert!(matches!(
            w.record(ip("10.0.0.3"), due + SUMMARY_INTERVAL),
            Next::Log(_)
        ));
    }

    #[test]
    fn many_sources_do_not_grow_the_table() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let _ = w.record(ip("10.0.0.1"), t0);
        for i in 0..10_000u32 {
            let _ = w.record(IpAddr::from(std::net::Ipv4Addr::from(i)), t0);
        }
        let s = w.flush(t0 + SUMMARY_INTERVAL).unwrap();
        assert_eq!(s.refused, 10_000);
        assert_eq!(s.sources, MAX_SOURCES);
    }
}
