//! The admin endpoint: `GET /healthz`, `/metrics` (Prometheus text format),
//! `/report` (JSON) and `/report.html`, and `POST /reload`. Meant for
//! loopback: it is off unless an `[admin]` section is configured, and binds
//! 127.0.0.1:9900 by default; `POST /reload` is refused to any peer that is
//! not on loopback even when the endpoint listens wider (Kubernetes probes).

use std::convert::Infallible;
use std::net::SocketAddr;
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

/// Serves the admin endpoint until `cancel`.
pub async fn serve(control: Arc<Control>, socket: TcpListener, cancel: CancellationToken) {
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
                    let resp = if req.uri().path() == "/reload" {
                        reload(&control, &req, peer).await
                    } else {
                        answer(&control, &req)
                    };
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
                "warnings": control.hygiene(),
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
    respond(status, ctype, body)
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
