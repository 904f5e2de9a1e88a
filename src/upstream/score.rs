//! The load score a server reports on its responses (`health_score_header`):
//! SharePoint's `X-SharePointHealthScore`, 0 (idle) to 10 (throttling: it
//! answers 503 to new requests).
//!
//! The balancer gives each server a share of new requests in proportion to
//! `11 - score` (see [`ServerScore::weight`]), so a server under load gets
//! fewer of them before it has to throttle, and a server at 10 gets none
//! until a response (a health check, or a request on a connection pinned
//! to it) reports a lower score, or for the upstream's `fail_timeout`:
//! then it gets the smallest share, enough to report a fresh score. This is
//! what F5 and Kemp customers do with iRules for SharePoint.
//!
//! The score read is the last one reported, whatever the response's status.
//! A value that is not a whole number from 0 to 10 is ignored.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use prometheus_client::metrics::gauge::Gauge;

/// The score at which a server takes no new request.
pub const THROTTLING: u8 = 10;

/// No score reported yet.
const UNKNOWN: u8 = u8::MAX;

/// The score of one server of one upstream.
pub struct ServerScore {
    /// The last score reported, or [`UNKNOWN`].
    last: AtomicU8,
    /// When the server last reported [`THROTTLING`] (cleared by a lower
    /// score).
    throttled_at: Mutex<Option<Instant>>,
    /// How long a server at 10 takes no new request without a fresh score.
    hold: Duration,
    /// `snigate_upstream_server_health_score`: the last score, -1 before
    /// the first.
    gauge: Gauge,
}

impl ServerScore {
    /// A server that has reported nothing yet; at 10 it is held off for
    /// `hold` at most.
    pub fn new(hold: Duration, gauge: Gauge) -> Self {
        gauge.set(-1);
        Self {
            last: AtomicU8::new(UNKNOWN),
            throttled_at: Mutex::new(None),
            hold,
            gauge,
        }
    }

    /// Notes the score in a response's `header`, if it carries one:
    /// whether the server has just begun throttling.
    pub fn observe(&self, headers: &HeaderMap, header: &str) -> bool {
        match headers.get(header).and_then(|v| parse(v.as_bytes())) {
            Some(score) => self.report(score, Instant::now()),
            None => false,
        }
    }

    /// Notes a score reported at `now`: whether the server has just begun
    /// throttling.
    fn report(&self, score: u8, now: Instant) -> bool {
        let before = self.last.swap(score, Ordering::Relaxed);
        self.gauge.set(i64::from(score));
        if score == THROTTLING {
            *crate::sync::lock(&self.throttled_at) = Some(now);
        } else if before == THROTTLING {
            *crate::sync::lock(&self.throttled_at) = None;
        }
        score == THROTTLING && before != THROTTLING
    }

    /// The last score reported, if any.
    pub fn last(&self) -> Option<u8> {
        Some(self.last.load(Ordering::Relaxed)).filter(|&s| s != UNKNOWN)
    }

    /// Whether the server may take a new request at `now`: not while it is
    /// throttling, for at most `hold`.
    pub fn accepts(&self, now: Instant) -> bool {
        if self.last.load(Ordering::Relaxed) != THROTTLING {
            return true;
        }
        crate::sync::lock(&self.throttled_at).is_none_or(|at| now >= at + self.hold)
    }

    /// The server's share of new requests: 11 at score 0 (and before any
    /// score), down to 1 at 10 (once `hold` is over).
    pub fn weight(&self) -> u32 {
        match self.last() {
            Some(score) => u32::from(THROTTLING + 1 - score.min(THROTTLING)),
            None => u32::from(THROTTLING) + 1,
        }
    }
}

/// A score as written in the header: a whole number from 0 to 10, spaces
/// around it allowed.
fn parse(value: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&s| s <= THROTTLING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score() -> ServerScore {
        ServerScore::new(Duration::from_secs(10), Gauge::default())
    }

    #[test]
    fn parses_whole_numbers_from_0_to_10_only() {
        assert_eq!(parse(b"0"), Some(0));
        assert_eq!(parse(b" 10 "), Some(10));
        assert_eq!(parse(b"7"), Some(7));
        for bad in [
            &b"11"[..],
            b"-1",
            b"",
            b"3.5",
            b"1e1",
            b"007",
            b"\xff",
            b"+1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn weight_falls_with_the_score() {
        let s = score();
        assert_eq!(s.weight(), 11);
        assert_eq!(s.gauge.get(), -1);
        let now = Instant::now();
        s.report(0, now);
        assert_eq!(s.weight(), 11);
        s.report(6, now);
        assert_eq!((s.weight(), s.gauge.get()), (5, 6));
        s.report(10, now);
        assert_eq!(s.weight(), 1);
    }

    #[test]
    fn a_throttling_server_takes_nothing_until_its_score_drops_or_the_hold_ends() {
        let s = score();
        let now = Instant::now();
        assert!(s.accepts(now));
        assert!(s.report(10, now), "begins throttling");
        assert!(!s.accepts(now));
        assert!(!s.accepts(now + Duration::from_secs(9)));
        assert!(s.accepts(now + Duration::from_secs(10)));
        // A fresh 10 holds it off again; a lower score lets it back at once.
        assert!(
            !s.report(10, now + Duration::from_secs(11)),
            "still throttling"
        );
        assert!(!s.accepts(now + Duration::from_secs(12)));
        s.report(9, now + Duration::from_secs(12));
        assert!(s.accepts(now + Duration::from_secs(12)));
    }

    #[test]
    fn reads_the_configured_header() {
        let s = score();
        let mut headers = HeaderMap::new();
        headers.insert("x-sharepointhealthscore", "4".parse().unwrap());
        s.observe(&headers, "x-other");
        assert_eq!(s.last(), None);
        s.observe(&headers, "x-sharepointhealthscore");
        assert_eq!(s.last(), Some(4));
    }
}
