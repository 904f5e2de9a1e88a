//! The admin endpoint: `GET /healthz`, `/metrics` (Prometheus text format),
//! `/report` (JSON) and `/report.html`. Meant for loopback: it is off unless
//! an `[admin]` section is configured, and binds 127.0.0.1:9900 by default.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::State;

/// Serves the admin endpoint until `cancel`.
pub async fn serve(
    state: Arc<State>,
    socket: TcpListener,
    started: SystemTime,
    cancel: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
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
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &req, started)) }
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

fn answer(state: &State, req: &Request<Incoming>, started: SystemTime) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match req.uri().path() {
        "/healthz" => {
            let uptime = started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            let body = serde_json::json!({
                "status": "ok",
                "uptime_s": uptime,
                "listeners": state.listeners.iter().map(|l| &l.settings.name).collect::<Vec<_>>(),
                "certificates": state.certificates.all().len(),
                "upstreams": state.upstreams.len(),
            });
            (StatusCode::OK, "application/json", body.to_string())
        }
        "/report" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&state.report.snapshot()).unwrap_or_default(),
        ),
        "/report.html" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::report::render_html(&state.report.snapshot()),
        ),
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
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}
