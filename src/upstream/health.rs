//! Server health: whether a server is in rotation, from connection failures
//! (passive) and, when an upstream has `health`, from checks (active).
//!
//! Passive (nginx's `max_fails`/`fail_timeout`): after `max_fails`
//! connection failures in a row a server is out of rotation for
//! `fail_timeout` (`max_fails = 0`: never). Then, without active checks, one
//! request at a time may try it again: a connection that succeeds puts it
//! back, one that fails puts it out for another `fail_timeout`.
//!
//! Active (`health = { path, interval, timeout, expect_status }`): every
//! `interval` each server gets `GET path` over a new HTTP/1.1 connection
//! (TLS as for requests when the upstream has `tls`), with `Host` the
//! server's address as written (plain; without `:80`) or the TLS server name
//! (TLS); the check passes when the response head arrives within `timeout`
//! with status `expect_status`. After
//! [`FALL`] failing checks in a row the server is out; one passing check
//! ([`RISE`]) puts it back. With active checks, a server taken out by
//! connection failures also waits for a passing check (made once its
//! `fail_timeout` is over) instead of getting trial requests. Servers start
//! in rotation; the first check runs at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::HealthSettings;
use crate::route::UpstreamId;

/// Failing checks in a row that take a server out of rotation: one lost
/// check (a dropped packet, a recycling application pool) does not.
pub const FALL: u32 = 2;
/// Passing checks in a row that put it back.
pub const RISE: u32 = 1;

/// The health of one server. The gauge `snigate_upstream_server_up` is 1
/// while the server is in rotation and 0 while it is out (also while a
/// passive `fail_timeout` is over but no request has reached it yet).
pub struct ServerHealth {
    /// Names for logs: the upstream and the server address.
    pub upstream: String,
    pub server: String,
    max_fails: u32,
    fail_timeout: Duration,
    /// The upstream has active checks.
    checked: bool,
    /// How long one trial request keeps others off a server whose
    /// `fail_timeout` is over (the connect timeout: it knows by then).
    trial: Duration,
    /// In rotation with nothing pending: the common case, read without a lock.
    ok: AtomicBool,
    state: Mutex<HealthState>,
    up: Gauge,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Connection failures in a row.
    fails: u32,
    /// Passive: out of rotation until then (then trial, or a passing check).
    out_until: Option<Instant>,
    /// A trial request is on its way until then.
    trial_until: Option<Instant>,
    /// Active: failing checks in a row.
    check_fails: u32,
    /// Active: passing checks in a row.
    check_passes: u32,
    /// Active: out until checks pass.
    check_down: bool,
}

impl HealthState {
    fn in_rotation(&self) -> bool {
        !self.check_down && self.out_until.is_none()
    }
}

impl std::fmt::Debug for ServerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHealth")
            .field("upstream", &self.upstream)
            .field("server", &self.server)
            .field("ok", &self.ok.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ServerHealth {
    /// A server in rotation; `up` is its `snigate_upstream_server_up` gauge.
    pub fn new(
        upstream: &str,
        server: &str,
        max_fails: u32,
        fail_timeout: Duration,
        checked: bool,
        trial: Duration,
        up: Gauge,
    ) -> Self {
        up.set(1);
        Self {
            upstream: upstream.to_string(),
            server: server.to_string(),
            max_fails,
            fail_timeout,
            checked,
            trial,
            ok: AtomicBool::new(true),
            state: Mutex::new(HealthState::default()),
            up,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        crate::sync::lock(&self.state)
    }

    /// Whether a request may go to this server now: in rotation, or due for
    /// a trial that nobody is making. Does not change anything.
    pub fn usable(&self, now: Instant) -> bool {
        self.ok.load(Ordering::Relaxed) || self.trial_due(&self.lock(), now)
    }

    fn trial_due(&self, st: &HealthState, now: Instant) -> bool {
        if st.check_down {
            return false;
        }
        match st.out_until {
            None => true,
            Some(until) => !self.checked && now >= until && st.trial_until.is_none_or(|t| now >= t),
        }
    }

    /// Takes this server for a request: `false` when it is not usable (any
    /// more). A server due for a trial is reserved for this request.
    pub fn claim(&self, now: Instant) -> bool {
        if self.ok.load(Ordering::Relaxed) {
            return true;
        }
        let mut st = self.lock();
        if !self.trial_due(&st, now) {
            return false;
        }
        if st.out_until.is_some() {
            st.trial_until = Some(now + self.trial);
            tracing::info!(upstream = %self.upstream, server = %self.server, "fail_timeout over: trying the server again");
        }
        true
    }

    /// Whether it is in rotation now (what the gauge says).
    pub fn in_rotation(&self) -> bool {
        self.ok.load(Ordering::Relaxed)
    }

    /// A new connection to the server succeeded (or it answered a request).
    pub fn connected(&self) {
        let mut st = self.lock();
        st.fails = 0;
        st.trial_until = None;
        if st.out_until.is_some() && !self.checked {
            st.out_until = None;
        }
        self.settle(&st);
    }

    /// A new connection to the server failed.
    pub fn connect_failed(&self, reason: &str) {
        let mut st = self.lock();
        st.fails = st.fails.saturating_add(1);
        st.trial_until = None;
        if self.max_fails == 0 || st.fails < self.max_fails {
            return;
        }
        let again = st.out_until.is_some();
        st.out_until = Some(Instant::now() + self.fail_timeout);
        if again {
            tracing::warn!(upstream = %self.upstream, server = %self.server, error = %reason,
                "server still unreachable; out of rotation for another {:?}", self.fail_timeout);
        } else {
            let back = if self.checked {
                "then until a health check passes"
            } else {
                "then one request tries it again"
            };
            tracing::warn!(upstream = %self.upstream, server = %self.server, error = %reason,
                "server taken out of rotation after {} failed connection attempts in a row: for {:?}, {back}",
                st.fails, self.fail_timeout);
        }
        self.settle(&st);
    }

    /// An active check passed.
    pub fn check_passed(&self) {
        let mut st = self.lock();
        st.check_fails = 0;
        st.check_passes = st.check_passes.saturating_add(1);
        if st.check_down && st.check_passes >= RISE {
            st.check_down = false;
        }
        if st.out_until.is_some_and(|t| Instant::now() >= t) {
            st.out_until = None;
            st.fails = 0;
        }
        self.settle(&st);
    }

    /// An active check failed.
    pub fn check_failed(&self, reason: &str) {
        let mut st = self.lock();
        st.check_passes = 0;
        st.check_fails = st.check_fails.saturating_add(1);
        if !st.check_down && st.check_fails >= FALL {
            st.check_down = true;
            tracing::warn!(upstream = %self.upstream, server = %self.server, error = %reason,
                "server failed {} health checks in a row: out of rotation until a check passes", st.check_fails);
        } else {
            tracing::debug!(upstream = %self.upstream, server = %self.server, error = %reason, "health check failed");
        }
        self.settle(&st);
    }

    /// Publishes the state: the lock-free flag, the gauge, and a log line
    /// when the server comes back.
    fn settle(&self, st: &HealthState) {
        let now = st.in_rotation();
        let was = self.ok.swap(now, Ordering::Relaxed);
        self.up.set(i64::from(now));
        if now && !was {
            tracing::info!(upstream = %self.upstream, server = %self.server, "server back in rotation");
        }
    }
}

/// One server an active checker watches.
#[derive(Debug, Clone)]
pub struct Target {
    pub upstream: UpstreamId,
    /// Index of the server in the upstream.
    pub server: usize,
    pub settings: HealthSettings,
    pub health: Arc<ServerHealth>,
}

/// One check of `server` on a new connection `io` (see
/// [`crate::upstream::Upstream::health_check`]): `GET path` with `Host:
/// host`; the status must be the expected one. The body is not read; a
/// passing check gives the response headers (a load score may be in them).
pub async fn check<IO>(
    io: IO,
    server: &str,
    host: &str,
    settings: &HealthSettings,
) -> Result<http::HeaderMap, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let req = Request::get(settings.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "snigate-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad health check request: {e}"))?;
    let send = sender.send_request(req);
    tokio::pin!(send, conn);
    // The connection is driven here: it ends with the response (which the
    // request side then holds) or with an error.
    let resp = tokio::select! {
        biased;
        r = &mut send => r,
        r = &mut conn => match r {
            Ok(()) => send.await,
            Err(e) => return Err(e.to_string()),
        },
    }
    .map_err(|e| e.to_string())?;
    let expected = settings.expect_status;
    if resp.status() == StatusCode::from_u16(expected).unwrap_or(StatusCode::OK) {
        Ok(resp.into_parts().0.headers)
    } else {
        Err(format!(
            "{} answered {} to GET {} (expected {expected})",
            server,
            resp.status().as_u16(),
            settings.path
        ))
    }
}

/// `Host` for a plain check: the server's address as written, without `:80`.
pub fn host_header(server: &str) -> &str {
    server.strip_suffix(":80").unwrap_or(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(max_fails: u32, checked: bool) -> ServerHealth {
        health_for(max_fails, Duration::from_millis(50), checked)
    }

    fn health_for(max_fails: u32, fail_timeout: Duration, checked: bool) -> ServerHealth {
        ServerHealth::new(
            "u",
            "s:1",
            max_fails,
            fail_timeout,
            checked,
            Duration::from_secs(5),
            Gauge::default(),
        )
    }

    #[test]
    fn passive_out_after_max_fails_then_one_trial() {
        let h = health(2, false);
        h.connect_failed("refused");
        assert!(h.in_rotation());
        h.connect_failed("refused");
        assert!(!h.in_rotation());
        assert_eq!(h.up.get(), 0);
        assert!(!h.usable(Instant::now()));
        let later = Instant::now() + Duration::from_millis(60);
        assert!(h.usable(later));
        assert!(h.claim(later));
        assert!(!h.usable(later), "one trial at a time");
        h.connect_failed("refused");
        assert!(!h.usable(Instant::now() + Duration::from_millis(10)));
        let later = Instant::now() + Duration::from_millis(60);
        assert!(h.claim(later));
        h.connected();
        assert!(h.in_rotation());
        assert_eq!(h.up.get(), 1);
        h.connect_failed("refused");
        assert!(h.in_rotation(), "the count starts again");
    }

    #[test]
    fn max_fails_zero_never_takes_out() {
        let h = health(0, false);
        for _ in 0..10 {
            h.connect_failed("refused");
        }
        assert!(h.in_rotation());
    }

    #[test]
    fn active_fall_and_rise() {
        // fail_timeout 0: over at once, so only the checks decide.
        let h = health_for(1, Duration::ZERO, true);
        h.check_failed("500");
        assert!(h.in_rotation());
        h.check_failed("500");
        assert!(!h.in_rotation());
        assert!(!h.usable(Instant::now() + Duration::from_secs(60)));
        h.check_passed();
        assert!(h.in_rotation());
        // Passive out with checks: no trial, a passing check after
        // fail_timeout puts it back.
        h.connect_failed("refused");
        assert!(!h.usable(Instant::now() + Duration::from_secs(60)));
        h.connected();
        assert!(!h.in_rotation(), "only a check puts it back");
        h.check_passed();
        assert!(h.in_rotation());
    }

    #[test]
    fn host_header_drops_port_80() {
        assert_eq!(host_header("web1:80"), "web1");
        assert_eq!(host_header("10.0.0.5:8080"), "10.0.0.5:8080");
    }
}
