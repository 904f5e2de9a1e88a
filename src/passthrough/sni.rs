//! Passthrough listeners: the raw TLS stream is routed by the SNI of its
//! ClientHello (`route::RouteTable::route_sni`) and copied both ways; the
//! backend does the TLS handshake.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::hello::read_hello;
use crate::conn::{emit, record, ConnInfo};
use crate::observe::metrics::FailureReason;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::millis;
use crate::state::State;
use crate::tls::ALERT_HANDSHAKE_FAILURE;

/// Passthrough: route the raw TLS stream by SNI and copy bytes both ways.
pub async fn serve(state: Arc<State>, info: ConnInfo, mut stream: TcpStream) {
    let start = Instant::now();
    let Some(hello) = read_hello(&state, &info, &mut stream, start).await else {
        return;
    };
    let listener = state.listener(info.listener);
    let mut rec = record(&state, &info, Some(&hello.info));
    let sni = hello.info.server_name();
    let sni = sni.as_deref();
    let route = match listener.routes.route_sni(sni, listener.settings.strict_sni) {
        Ok(route) => route,
        Err(reason) => {
            listener.metrics.failure(FailureReason::UnknownName);
            rec.reason = Some(reason);
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            let _ = stream.write_all(&ALERT_HANDSHAKE_FAILURE).await;
            return;
        }
    };
    let upstream = state.upstream(route.upstream());
    rec.upstream = Some(upstream.name.clone());
    rec.fallback = matches!(route, crate::route::RouteMatch::Default(_));
    let backend = match upstream.connect_raw(info.peer.ip()).await {
        Ok((server, b)) => {
            tracing::debug!(conn = info.conn, %server, "passthrough");
            b
        }
        Err(e) => {
            listener.metrics.failure(FailureReason::UpstreamUnreachable);
            rec.reason = Some(e.to_string());
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            return;
        }
    };
    rec.outcome = HandshakeOutcome::Passthrough;
    rec.ms = millis(start.elapsed());
    emit(&state, &info, &rec);
    drop(rec);
    crate::passthrough::legacy::hand_over(&state, upstream, &info, hello.bytes, stream, backend)
        .await;
}
