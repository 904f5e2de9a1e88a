//! Legacy fallback on https listeners (`legacy_upstream`): a client that
//! rustls cannot serve ([`crate::tls::fit`] decides, before any handshake)
//! is handed, as the raw TLS stream, to an upstream that still speaks its
//! protocol (an IIS site with an IP:port binding, say) instead of failing
//! its handshake. [`forward`] connects to the legacy upstream, writes the
//! PROXY header if it wants one and the hello bytes as read, then copies
//! both ways.

use std::borrow::Cow;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::ConnInfo;
use crate::observe::handshake_log::HandshakeLine;
use crate::observe::metrics::FailureReason;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::millis;
use crate::state::State;
use crate::upstream::Upstream;

/// The first bytes for an upstream's raw TLS stream: the PROXY header if
/// the upstream has `send_proxy_protocol`, then `hello` (the client's bytes
/// as read), in one buffer so that they leave in one segment; without a
/// header, `hello` itself.
fn preamble<'a>(upstream: &Upstream, info: &ConnInfo, hello: &'a [u8]) -> Cow<'a, [u8]> {
    match upstream.send_proxy_protocol {
        Some(v) => {
            let mut out = crate::conn::proxy_protocol::header(v, info.peer, info.local);
            out.extend_from_slice(hello);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(hello),
    }
}

/// Hands a client rustls cannot serve to the listener's `legacy_upstream`:
/// connects, logs the handshake (`legacy_passthrough`, or `failed` when the
/// upstream cannot be reached) with `rec.reason` (why rustls cannot serve
/// it), writes the PROXY header if the upstream wants one and the hello
/// bytes as read, then copies both ways under `client_idle`, half-closes
/// passed on.
pub(crate) async fn forward(
    state: &State,
    info: &ConnInfo,
    mut client: TcpStream,
    hello: Vec<u8>,
    upstream_name: &str,
    mut rec: HandshakeLine,
    start: Instant,
) {
    let reason = rec.reason.take().unwrap_or_default();
    rec.hint = None;
    rec.upstream = Some(upstream_name.to_string());
    let metrics = &state.listener(info.listener).metrics;
    // Nothing of snigate's was served: the upstream does the handshake.
    rec.certificate = None;
    rec.fallback = false;
    let Some(upstream) = state.upstreams.iter().find(|u| u.name == upstream_name) else {
        // Validation makes legacy_upstream name an upstream; be safe anyway.
        metrics.failure(FailureReason::Internal);
        rec.reason = Some(format!(
            "{reason}; legacy_upstream \"{upstream_name}\" names no upstream"
        ));
        rec.ms = millis(start.elapsed());
        crate::conn::emit(state, info, &rec);
        let _ = client.write_all(&crate::tls::ALERT_HANDSHAKE_FAILURE).await;
        return;
    };
    let backend = match upstream.connect_raw(info.peer.ip()).await {
        Ok((server, backend)) => {
            tracing::debug!(conn = info.conn, %server, reason, "legacy passthrough");
            backend
        }
        Err(e) => {
            metrics.failure(FailureReason::UpstreamUnreachable);
            rec.reason = Some(format!(
                "cannot reach legacy_upstream \"{upstream_name}\": {e} (rustls cannot serve this client: {reason})"
            ));
            rec.ms = millis(start.elapsed());
            crate::conn::emit(state, info, &rec);
            let _ = client.write_all(&crate::tls::ALERT_HANDSHAKE_FAILURE).await;
            return;
        }
    };
    rec.outcome = HandshakeOutcome::LegacyPassthrough;
    rec.reason = Some(reason);
    rec.ms = millis(start.elapsed());
    crate::conn::emit(state, info, &rec);
    drop(rec);
    hand_over(state, upstream, info, hello, client, backend).await;
}

/// Hands `client`'s raw TLS stream to `backend` (a connection to
/// `upstream`): the [`preamble`] (PROXY header if wanted, then the `hello`
/// bytes as read), then the bytes both ways under `client_idle`, half-closes
/// passed on. Passthrough listeners and the legacy path alike.
pub(crate) async fn hand_over(
    state: &State,
    upstream: &Upstream,
    info: &ConnInfo,
    hello: Vec<u8>,
    client: TcpStream,
    mut backend: TcpStream,
) {
    if backend
        .write_all(&preamble(upstream, info, &hello))
        .await
        .is_err()
    {
        return;
    }
    drop(hello);
    let idle = state.settings.timeouts.client_idle;
    crate::io::splice::copy_tcp_both_ways(client, backend, idle).await;
}
