//! The admin endpoint: `GET /healthz`, `/metrics` (Prometheus text format),
//! `/report` (JSON), `/report.html` and `/report.csv`, and `POST /reload`. Meant for
//! loopback: it is off unless an `[admin]` section is configured, and binds
//! 127.0.0.1:9900 by default; `POST /reload` is refused to any peer that is
//! not on loopback even when the endpoint listens wider (Kubernetes probes).
//!
//! It has no authentication, so it must not be reachable from a web page in
//! the operator's browser either:
//! - every request's `Host` must name the endpoint by address (its bind
//!   address, `localhost`, `127.0.0.1`, `[::1]`; any IP address when it binds
//!   a wildcard), else `421`: a page whose DNS name was rebound to 127.0.0.1
//!   sends its own name, and never reads an answer;
//! - `POST /reload` with an `Origin` other than the endpoint itself is `403`:
//!   a cross-site form post cannot trigger reloads;
//! - every answer carries `X-Content-Type-Options: nosniff`, and
//!   `/report.html` (which shows User-Agents and Hosts clients sent) a
//!   Content-Security-Policy that allows its inline style and its one inline
//!   script (by hash) and nothing else.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::Control;

/// The Content-Security-Policy of `/report.html`: the page is one document
/// with an inline `<style>`, inline SVG (presentation attributes, which CSP
/// does not govern) and one inline script, the kinds table's sorting,
/// allowed by its SHA-256 (a test checks it against the script the page
/// carries); no other script, no images, fonts, frames or forms. Strings
/// from the network are escaped, and should one ever slip through, it can
/// neither run nor load anything.
pub const REPORT_CSP: &str = "default-src 'none'; script-src 'sha256-PvKXNGYR5HOJZuWWkbRlqpmCfof6neXUuvXKGcq2y7g='; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `?clients=N` above this is taken as this: the live table keeps 1000 by
/// default, and the document's size bound cuts what does not fit anyway.
pub const MAX_REPORT_CLIENTS: usize = 10_000;

/// Serves the admin endpoint until `cancel`.
pub async fn serve(control: Arc<Control>, socket: TcpListener, cancel: CancellationToken) {
    // The address actually bound (port 0 resolved): what Host and Origin
    // must name.
    let bind = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "admin endpoint has no local address; not serving");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let control = control.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let control = control.clone();
                async move {
                    let mut resp = if let Err(refusal) = check_host(bind, &req) {
                        tracing::warn!(%peer, host = %refusal, "admin request refused: Host does not name the admin endpoint");
                        misdirected(&refusal)
                    } else if req.uri().path() == "/reload" {
                        reload(&control, &req, peer, bind).await
                    } else {
                        answer(&control, &req)
                    };
                    // Browsers must take every answer for its declared type.
                    resp.headers_mut().insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        header::HeaderValue::from_static("nosniff"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `POST /reload`: reloads and answers with the outcome (200, or 500 with
/// every error; the old configuration keeps serving).
async fn reload(
    control: &Arc<Control>,
    req: &Request<Incoming>,
    peer: SocketAddr,
    bind: SocketAddr,
) -> Response<Full<Bytes>> {
    if req.method() != http::Method::POST {
        let mut resp = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use POST /reload\n".into(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return resp;
    }
    if !peer.ip().to_canonical().is_loopback() {
        tracing::warn!(%peer, "POST /reload refused: not from loopback");
        return respond(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "reload is only accepted from loopback\n".into(),
        );
    }
    if let Some(origin) = foreign_origin(bind, req) {
        tracing::warn!(%peer, %origin, "POST /reload refused: Origin is not the admin endpoint");
        return respond(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            format!("reload refused: Origin {origin} is not this admin endpoint (http://{bind})\n"),
        );
    }
    tracing::info!(%peer, "reload requested on the admin endpoint");
    let result = control.reload().await;
    let status = control.status();
    let code = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = serde_json::to_string_pretty(&status.last_reload).unwrap_or_default() + "\n";
    respond(code, "application/json", body)
}

fn answer(control: &Control, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let state = control.state();
    let (status, ctype, body) = match req.uri().path() {
        "/healthz" => {
            let uptime = control
                .started()
                .elapsed()
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let reload = control.status();
            let body = serde_json::json!({
                "status": "ok",
                "uptime_s": uptime,
                "generation": reload.generation,
                "started": reload.started,
                "last_reload": reload.last_reload,
                "listeners": state.listeners.iter().map(|l| &l.settings.name).collect::<Vec<_>>(),
                "certificates": state.certificates.all().len(),
                "upstreams": state.upstreams.len(),
                "health_scores": health_scores(&state.upstreams),
                "warnings": control.hygiene(),
            });
            (StatusCode::OK, "application/json", body.to_string())
        }
        "/report" | "/report.html" | "/report.csv" => return report(&state.report, req),
        "/report/hellos" => {
            // What `snigate report --against NEW.toml FILE` replays, saved.
            let mut resp = respond(
                StatusCode::OK,
                "application/json",
                // Strings, numbers and string-keyed maps: cannot fail.
                serde_json::to_string(&state.report.hellos_seen()).unwrap_or_default(),
            );
            resp.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                header::HeaderValue::from_static("attachment; filename=\"snigate-hellos.json\""),
            );
            return resp;
        }
        "/metrics" => (
            StatusCode::OK,
            // prometheus-client writes OpenMetrics text (with `# EOF`).
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
    };
    respond(status, ctype, body)
}

/// `/report` (JSON), `/report.html` and `/report.csv`: the report as it
/// stands, `/report` and `/report.html` with at most `?clients=N`
/// per-address rows and within their size bounds; `400` for a `clients`
/// that is not a number.
fn report(live: &crate::observe::report::Report, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    use crate::observe::report::{html_document, json_document, render_csv};
    let clients = match clients_asked(req.uri().query()) {
        Ok(n) => n,
        Err(message) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                message + "\n",
            )
        }
    };
    let snapshot = live.snapshot();
    match req.uri().path() {
        "/report.html" => {
            let mut resp = respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                html_document(snapshot, clients),
            );
            resp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(REPORT_CSP),
            );
            resp
        }
        "/report.csv" => {
            let mut resp = respond(
                StatusCode::OK,
                "text/csv; charset=utf-8",
                render_csv(&snapshot),
            );
            resp.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                header::HeaderValue::from_static("attachment; filename=\"snigate-report.csv\""),
            );
            resp
        }
        _ => respond(
            StatusCode::OK,
            "application/json",
            json_document(snapshot, clients),
        ),
    }
}

/// The per-address rows a report query asks for: `clients=N` (at most
/// [`MAX_REPORT_CLIENTS`]), else [`DEFAULT_CLIENTS`](crate::observe::report::DEFAULT_CLIENTS);
/// other parameters are ignored. The error says what is wrong.
pub fn clients_asked(query: Option<&str>) -> Result<usize, String> {
    let asked = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("clients="));
    let Some(text) = asked else {
        return Ok(crate::observe::report::DEFAULT_CLIENTS);
    };
    match text.parse::<u64>() {
        Ok(n) => Ok(usize::try_from(n).map_or(MAX_REPORT_CLIENTS, |n| n.min(MAX_REPORT_CLIENTS))),
        // A number too large for u64 is still a number: the most there is.
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Ok(MAX_REPORT_CLIENTS),
        Err(_) => Err(format!(
            "clients={text:?}: the number of per-address rows must be a whole number, 0 to {MAX_REPORT_CLIENTS} (default {})",
            crate::observe::report::DEFAULT_CLIENTS
        )),
    }
}

/// `/healthz`'s `health_scores`: per upstream with `health_score_header`,
/// each server's last score (`null` before its first) and whether it takes
/// no new request for it now.
fn health_scores(upstreams: &[crate::upstream::Upstream]) -> serde_json::Value {
    let scored = upstreams.iter().filter(|u| u.has_scores()).map(|u| {
        let servers: Vec<_> = u
            .scores()
            .into_iter()
            .map(|(server, score, throttling)| {
                serde_json::json!({"server": server, "score": score, "throttling": throttling})
            })
            .collect();
        (u.name.clone(), serde_json::Value::from(servers))
    });
    serde_json::Value::Object(scored.collect())
}

fn respond(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}

/// `421 Misdirected Request`: this endpoint does not answer for that Host.
fn misdirected(host: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::MISDIRECTED_REQUEST,
        "text/plain; charset=utf-8",
        format!(
            "the admin endpoint does not answer for Host {host:?}; \
             address it by IP address or as localhost\n"
        ),
    )
}

/// Checks the request's `Host` (and an absolute request target's authority)
/// with [`host_allowed`]; the refused value on error. A request without Host
/// passes: browsers always send one, so it cannot be a rebound page (HTTP/1.0
/// tools send none).
fn check_host<B>(bind: SocketAddr, req: &Request<B>) -> Result<(), String> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("(several Host headers)".into());
    }
    let named = first
        .map(|v| v.to_str().map_err(|_| "(not text)".to_string()))
        .transpose()?;
    let authority = req.uri().authority().map(|a| a.as_str());
    for host in named.into_iter().chain(authority) {
        if !host_allowed(bind, host) {
            return Err(host.to_string());
        }
    }
    Ok(())
}

/// Splits `host[:port]` (IPv6 in brackets) into the host and the port text;
/// `None` when it is not of that shape.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        // Brackets hold an IPv6 address and nothing else.
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!host.is_empty() && port_ok).then_some((host, port))
}

/// Whether `Host` names this admin endpoint bound at `bind`: `localhost`, a
/// loopback address or the bind address, with any port (an SSH or `kubectl
/// port-forward` changes it); when `bind` is a wildcard (0.0.0.0, [::]:
/// Kubernetes probes and scrapes send the pod's IP address), any IP address.
/// A DNS name other than localhost never passes: it is what a page rebound
/// to this address would send.
pub fn host_allowed(bind: SocketAddr, host: &str) -> bool {
    let Some((name, _port)) = split_authority(host.trim()) else {
        return false;
    };
    if name.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    let ip = ip.to_canonical();
    bind.ip().is_unspecified() || ip.is_loopback() || ip == bind.ip().to_canonical()
}

/// The request's `Origin` when it is present and not this endpoint's own;
/// `None` when the request may go on. Its own: `http://` and the bind
/// address, or `localhost`, `127.0.0.1` or `[::1]` with the bind port, or
/// the (already checked) Host the request was sent to (a port-forward).
fn foreign_origin<B>(bind: SocketAddr, req: &Request<B>) -> Option<String> {
    let origin = req.headers().get(header::ORIGIN)?;
    let Ok(text) = origin.to_str() else {
        return Some("(not text)".into());
    };
    let own = text
        .strip_prefix("http://")
        .filter(|authority| {
            let port = bind.port();
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            [
                bind.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]
            .iter()
            .map(String::as_str)
            .chain(host)
            .any(|a| a.eq_ignore_ascii_case(authority))
        })
        .is_some();
    (!own).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn the_report_csp_allows_the_pages_script_by_its_hash() {
        use base64::Engine;
        use sha2::Digest;
        let report = crate::observe::report::Report::new(Default::default());
        let page = crate::observe::report::render_html(&report.snapshot());
        let (_, after) = page
            .split_once("<script>")
            .expect("the page has its script");
        let (script, rest) = after.split_once("</script>").expect("closed");
        assert!(!rest.contains("<script"), "one script only");
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
        assert!(
            REPORT_CSP.contains(&format!("script-src 'sha256-{hash}';")),
            "REPORT_CSP must allow the script by 'sha256-{hash}': {REPORT_CSP}"
        );
        let scripts = REPORT_CSP
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .expect("a script-src directive");
        assert!(!scripts.contains("unsafe"), "{scripts}");
    }

    #[test]
    fn clients_asked_in_the_query() {
        let default = crate::observe::report::DEFAULT_CLIENTS;
        assert_eq!(clients_asked(None), Ok(default));
        assert_eq!(clients_asked(Some("")), Ok(default));
        assert_eq!(clients_asked(Some("x=1")), Ok(default));
        assert_eq!(clients_asked(Some("clients=7")), Ok(7));
        assert_eq!(clients_asked(Some("x=1&clients=0")), Ok(0));
        assert_eq!(
            clients_asked(Some("clients=999999")),
            Ok(MAX_REPORT_CLIENTS)
        );
        assert_eq!(
            clients_asked(Some("clients=99999999999999999999999")),
            Ok(MAX_REPORT_CLIENTS)
        );
        for bad in [
            "clients=",
            "clients=-1",
            "clients=ten",
            "clients=1.5",
            "clients=%31",
        ] {
            let err = clients_asked(Some(bad)).expect_err(bad);
            assert!(err.contains("whole number"), "{err}");
        }
    }

    #[test]
    fn hosts_on_a_loopback_bind() {
        let bind = addr("127.0.0.1:9900");
        for ok in [
            "127.0.0.1:9900",
            "127.0.0.1",
            "localhost:9900",
            "LocalHost",
            "localhost.:19900",
            "[::1]:9900",
            "[::1]",
            "127.0.0.2:9900",
        ] {
            assert!(host_allowed(bind, ok), "{ok} refused");
        }
        for bad in [
            "evil.test",
            "evil.test:9900",
            "localhost.evil.test:9900",
            "127.0.0.1.nip.io:9900",
            "10.0.0.5:9900",
            "",
            ":9900",
            "127.0.0.1:",
            "127.0.0.1:x",
            "[::1",
            "[::1]x",
            "[evil.test]:9900",
            "[localhost]:9900",
        ] {
            assert!(!host_allowed(bind, bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn hosts_on_a_management_address_and_a_wildcard() {
        let bind = addr("10.0.0.5:9900");
        assert!(host_allowed(bind, "10.0.0.5:9900"));
        assert!(host_allowed(bind, "localhost:9900"));
        assert!(!host_allowed(bind, "10.0.0.6:9900"));
        assert!(!host_allowed(bind, "admin.farm.test:9900"));

        // Kubernetes: the kubelet and Prometheus send the pod IP.
        for bind in [addr("0.0.0.0:9900"), addr("[::]:9900")] {
            for ok in [
                "10.244.1.17:9900",
                "[fd00::17]:9900",
                "127.0.0.1:9900",
                "localhost",
            ] {
                assert!(host_allowed(bind, ok), "{ok} refused on {bind}");
            }
            for bad in ["snigate.snigate.svc:9900", "evil.test"] {
                assert!(!host_allowed(bind, bad), "{bad} accepted on {bind}");
            }
        }
    }

    fn with_origin(host: &str, origin: &str) -> Request<()> {
        Request::builder()
            .method("POST")
            .uri("/reload")
            .header("host", host)
            .header("origin", origin)
            .body(())
            .expect("request")
    }

    #[test]
    fn origins_of_reload() {
        let bind = addr("127.0.0.1:9900");
        let host = "127.0.0.1:9900";
        for own in [
            "http://127.0.0.1:9900",
            "http://localhost:9900",
            "http://LOCALHOST:9900",
            "http://[::1]:9900",
        ] {
            assert_eq!(foreign_origin(bind, &with_origin(host, own)), None, "{own}");
        }
        // Through a port-forward: the page's own origin is the Host it used.
        let forwarded = with_origin("localhost:19900", "http://localhost:19900");
        assert_eq!(foreign_origin(bind, &forwarded), None);
        for foreign in [
            "http://evil.test",
            "https://127.0.0.1:9900",
            "http://127.0.0.1:8080",
            "http://localhost",
            "null",
        ] {
            assert_eq!(
                foreign_origin(bind, &with_origin(host, foreign)).as_deref(),
                Some(foreign)
            );
        }
        let none = Request::builder()
            .method("POST")
            .uri("/reload")
            .body(())
            .expect("request");
        assert_eq!(foreign_origin(bind, &none), None, "curl sends no Origin");
    }
}
