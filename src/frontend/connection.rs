//! One accepted client connection, in the order of the README's
//! "Architecture" (a connection's path):
//! ClientHello -> certificate (or passthrough upstream) -> TLS -> HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::ListenerMode;
use crate::conn::hello::read_hello;
use crate::conn::{emit, established, next_conn_id, record, ConnInfo};
use crate::frontend::pending::Pending;
use crate::http::proxy;
use crate::observe::metrics::FailureReason;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::millis;
use crate::state::source_limit::SourceSlot;
use crate::state::{ListenerId, State};
use crate::tls::decide::{decide, handshake_failure, Decision, Engine, RefusalKind, Served};
use crate::tls::failure::HandshakeFailure;
use crate::tls::hello::ClientHello;
use crate::tls::server_stream::ServerTlsStream;
use crate::tls::{self, ALERT_UNRECOGNIZED_NAME};

/// Serves one accepted connection to its end.
///
/// A task is allocated at the size of its future's largest state, for the
/// connection's whole life. So the future here is small (the
/// `frontend_task_is_small` test holds it to that): everything up to the
/// stage that serves the connection ([`open`]: PROXY header, hello,
/// handshake, first bytes) runs in a box of its own that is freed once that
/// stage starts, and the task keeps only the stage's box. An `async fn`
/// would keep a copy of each argument beside the values moved out of it,
/// and every local that any of its awaits overlaps: its task was 1,024
/// bytes (tokio rounds a task up to 128), now 256.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve(
    state: Arc<State>,
    listener: ListenerId,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    current: crate::state::Current,
) -> impl Future<Output = ()> + Send {
    let opening = Box::pin(open(state, listener, stream, peer, local, current));
    async move {
        if let Some(stage) = opening.await {
            stage.await;
        }
    }
}

/// The stage that serves a connection from its first request (or, in
/// passthrough, its first forwarded byte) to its end.
type Stage = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Everything before the stage that serves the connection: the PROXY
/// header, then by the listener's mode the handshake and the first bytes.
/// `None` when the connection ended before that stage.
async fn open(
    state: Arc<State>,
    listener: ListenerId,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    current: crate::state::Current,
) -> Option<Stage> {
    let conn = next_conn_id();
    let settings = &state.listener(listener).settings;
    let (mode, proxy_protocol) = (settings.mode, settings.proxy_protocol);
    let mut info = ConnInfo {
        conn,
        listener,
        peer,
        local,
        sni: None,
        certificate: None,
        tls: false,
        affinity: Default::default(),
        report: None,
    };
    // Behind a PROXY-protocol balancer the header comes first and names the
    // real client: from here on it is the connection's peer.
    // Boxed: its read buffers would otherwise stay in every connection's
    // task while the connection waits for its hello.
    if proxy_protocol
        && !Box::pin(crate::conn::proxy_protocol::accept(
            &state,
            &mut info,
            &mut stream,
        ))
        .await
    {
        return None;
    }
    // The client the header named is counted against
    // `max_connections_per_ip` (without a header the accept loop counted
    // the socket's peer); held until this connection ends.
    let source = if proxy_protocol {
        match state.listener(listener).admit(info.peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                crate::state::source_limit::refuse(stream);
                return None;
            }
        }
    } else {
        None
    };
    // Each stage is boxed: this future is as large as its largest state,
    // and a connection that waits (for its hello, for its first request)
    // should carry only what its current stage needs.
    let stage = match mode {
        ListenerMode::Http => proxy::serve(state.clone(), Arc::new(info), stream, false, current),
        ListenerMode::Https => {
            let handshake = serve_https(state.clone(), info, stream, current.clone());
            let Established { info, stream, h2 } = Box::pin(handshake).await?.unboxed();
            let info = Arc::new(info);
            if !h2 {
                // HTTP/1.1 waits for its first request as it waits between
                // requests, parked in the stage's own box (`http::h1`):
                // the box an idle connection keeps from its handshake on
                // is the one it keeps between requests. (A box for the
                // wait before it, freed at the first request, left a hole
                // the stage's box did not fit: 0.6 KiB more per connection
                // after one request, idle-10k.)
                let stage = proxy::serve(state, info, stream, false, current);
                return Some(holding(stage, source));
            }
            let idle = state.settings.timeouts.client_idle;
            let first = crate::http::handoff::first_bytes(stream, idle, &state.stop);
            let stream = Box::pin(first).await?;
            proxy::serve(state, info, stream, true, current)
        }
        ListenerMode::Passthrough => Box::pin(crate::passthrough::sni::serve(state, info, stream)),
    };
    Some(holding(stage, source))
}

/// `stage`, holding the client's place in `max_connections_per_ip` (the
/// client a PROXY header named) until it ends: in a box of its own when
/// there is one, rather than a slot in every connection's task (the slot
/// made the task 128 bytes larger).
fn holding(stage: Stage, source: Option<SourceSlot>) -> Stage {
    match source {
        None => stage,
        Some(slot) => Box::pin(async move {
            stage.await;
            drop(slot);
        }),
    }
}

/// A client connection that rustls has established, on its way to HTTP.
struct Established {
    info: ConnInfo,
    stream: ServerTlsStream<TcpStream>,
    /// ALPN chose h2.
    h2: bool,
}

impl Established {
    /// The value, its box freed now. Moving the fields out of `*boxed` in
    /// place would free the box only when the binding goes out of scope:
    /// at the end of the connection, 1,472 bytes (its size) held by every
    /// connection for nothing (heaptrack, `benches/idle-10k.sh`).
    fn unboxed(self: Box<Self>) -> Self {
        *self
    }
}

/// An https connection's hello read and decided, then the rustls handshake:
/// the established connection for HTTP, or `None` when it ended here (a
/// refusal, a failed handshake, or a legacy path the decision chose, which
/// serves the connection to its end). Returned to the caller, boxed, so
/// that this stage's state (the hello, its log line) is freed before a
/// connection that may stay open for hours.
async fn serve_https(
    state: Arc<State>,
    mut info: ConnInfo,
    mut stream: TcpStream,
    current: crate::state::Current,
) -> Option<Box<Established>> {
    let start = Instant::now();
    let hello = read_hello(&state, &info, &mut stream, start).await?;
    let listener = state.listener(info.listener);
    let mut rec = record(&state, &info, Some(&hello.info));
    let served = match decide(listener.tls(), &hello.info, &state.certificates) {
        Decision::Serve(served) => served,
        Decision::Refuse(refusal) => {
            listener.metrics.failure(match refusal.kind {
                RefusalKind::Sslv2 => FailureReason::Sslv2,
                RefusalKind::NoCertificate => FailureReason::UnknownName,
                RefusalKind::NoConfiguration => FailureReason::Internal,
            });
            rec.reason = Some(refusal.reason);
            rec.hint = refusal.hint;
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            if refusal.kind != RefusalKind::Sslv2 {
                let _ = stream.write_all(&ALERT_UNRECOGNIZED_NAME).await;
            }
            return None;
        }
    };
    rec.certificate = Some(state.certificates.get(served.certificate).name.clone());
    rec.fallback = served.fallback;
    if served.engine != Engine::Rustls {
        let pending = Box::new(Pending {
            state,
            info,
            stream,
            hello,
            rec,
            start,
            current,
        });
        Box::pin(serve_legacy(pending, served)).await;
        return None;
    }
    let config = listener.server_config(served.certificate).clone();
    let ClientHello { bytes, info: hello } = hello;
    // rustls reads the hello's bytes first, then the socket.
    let handshake = Box::pin(tls::handshake(
        stream,
        bytes,
        config,
        state.settings.timeouts.handshake,
    ))
    .await;
    let (tls_stream, negotiated) = match handshake {
        Ok(done) => done,
        Err(reason) => {
            listener.metrics.failure(failure_reason(&reason));
            let (reason, hint) = handshake_failure(&hello, &served, &state.certificates, &reason);
            rec.hint = hint;
            rec.reason = Some(reason);
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            return None;
        }
    };
    rec.outcome = HandshakeOutcome::Ok;
    rec.version = Some(negotiated.version);
    rec.suite = Some(negotiated.suite);
    rec.group = negotiated.group;
    rec.alpn = negotiated.alpn.clone();
    rec.resumed = negotiated.resumed;
    if negotiated.resumed {
        listener.metrics.resumed();
    }
    rec.ms = millis(start.elapsed());
    info.report = emit(&state, &info, &rec);
    established(&mut info, &hello, served.certificate);
    let h2 = negotiated.alpn.as_deref() == Some("h2");
    Some(Box::new(Established {
        info,
        stream: tls_stream,
        h2,
    }))
}

/// A hello rustls cannot serve, to the legacy path the decision chose.
async fn serve_legacy(pending: Box<Pending>, served: Served) {
    match served.engine {
        Engine::Rustls => {}
        Engine::LegacyUpstream { upstream, reason } => {
            let Pending {
                state,
                info,
                stream,
                hello,
                mut rec,
                start,
                ..
            } = *pending;
            rec.reason = Some(reason);
            crate::passthrough::legacy::forward(
                &state,
                &info,
                stream,
                hello.bytes,
                &upstream,
                rec,
                start,
            )
            .await;
        }
        #[cfg(feature = "legacy-tls")]
        Engine::LegacyTls { reason } => {
            crate::frontend::legacy_tls::serve(pending, served.certificate, reason).await;
        }
        #[cfg(not(feature = "legacy-tls"))]
        Engine::LegacyTls { reason } => {
            // ListenerState::tls never asks for it in such a build.
            let Pending {
                state,
                info,
                mut rec,
                start,
                ..
            } = *pending;
            let metrics = &state.listener(info.listener).metrics;
            metrics.failure(FailureReason::Internal);
            rec.reason = Some(format!("{reason}; this build has no legacy-tls engine"));
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
        }
    }
}

/// The `reason` label a failed rustls handshake counts under.
fn failure_reason(failure: &HandshakeFailure) -> FailureReason {
    match failure {
        HandshakeFailure::Timeout => FailureReason::HandshakeTimeout,
        HandshakeFailure::ClientClosed
        | HandshakeFailure::ClientReset
        | HandshakeFailure::Io(_) => FailureReason::ClientClosed,
        HandshakeFailure::AlertReceived(_) => FailureReason::ClientAlert,
        HandshakeFailure::NoVersion => FailureReason::NoVersion,
        HandshakeFailure::NoCipherSuite => FailureReason::NoCipherSuite,
        HandshakeFailure::NoSignatureAlgorithms | HandshakeFailure::NoSignatureScheme => {
            FailureReason::NoSignatureScheme
        }
        HandshakeFailure::NoKeyExchangeGroup | HandshakeFailure::Incompatible(_) => {
            FailureReason::Incompatible
        }
        HandshakeFailure::Misbehaved(_)
        | HandshakeFailure::Malformed(_)
        | HandshakeFailure::Other(_) => FailureReason::ProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns.
    fn future_size<A, B, C, D, E, G, F: Future>(_: fn(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task is allocated at its future's size (with tokio's
    /// header, rounded up to 128 bytes) for the connection's whole life, so
    /// what [`serve`] keeps is held to the stage's box: the stages before
    /// it are boxed. It was 640 bytes (a 1,024-byte task) before that.
    #[test]
    fn frontend_task_is_small() {
        let size = future_size(serve);
        assert!(size <= 48, "{size} bytes");
    }
}
