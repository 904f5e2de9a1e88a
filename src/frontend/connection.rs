//! One accepted client connection, in the order of DESIGN.md's data flow:
//! ClientHello -> certificate (or passthrough upstream) -> TLS -> HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::ListenerMode;
use crate::conn::{emit, established, next_conn_id, peer_ip, record, ConnInfo};
use crate::http::proxy;
use crate::io::replay::PrefixedStream;
use crate::observe::telemetry::millis;
use crate::state::State;
use crate::tls::hello::{read_client_hello, ClientHello, HelloError};
use crate::tls::{self, Selection, ALERT_HANDSHAKE_FAILURE, ALERT_UNRECOGNIZED_NAME};

/// Serves one accepted connection to its end.
pub async fn serve(
    state: Arc<State>,
    listener: usize,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    current: crate::state::Current,
) {
    let conn = next_conn_id();
    let settings = &state.listeners[listener].settings;
    let (mode, proxy_protocol) = (settings.mode, settings.proxy_protocol);
    let mut info = ConnInfo {
        conn,
        listener,
        peer,
        local,
        sni: None,
        certificate: None,
        tls: false,
        peer_ip: peer_ip(peer.ip()),
        affinity: Default::default(),
        report: None,
    };
    // Behind a PROXY-protocol balancer the header comes first and names the
    // real client: from here on it is the connection's peer.
    // Boxed: its read buffers would otherwise stay in every connection's
    // task for the connection's whole life.
    if proxy_protocol
        && !Box::pin(crate::conn::proxy_protocol::accept(
            &state,
            &mut info,
            &mut stream,
        ))
        .await
    {
        return;
    }
    // The client the header named is counted against
    // `max_connections_per_ip` (without a header the accept loop counted
    // the socket's peer); held until this connection ends.
    let _source = if proxy_protocol {
        match state.listeners[listener].admit(info.peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                crate::state::source_limit::refuse(stream);
                return;
            }
        }
    } else {
        None
    };
    // Each stage is boxed: a task's future is as large as its largest state,
    // and an idle connection should carry only what its current stage needs
    // (the handshake's state is freed once HTTP is being served).
    match mode {
        ListenerMode::Http => {
            proxy::serve(state.clone(), Arc::new(info), stream, false, current).await
        }
        ListenerMode::Https => Box::pin(serve_https(state, info, stream, current)).await,
        ListenerMode::Passthrough => Box::pin(serve_passthrough(state, info, stream)).await,
    }
}

/// Reads the ClientHello under the `client_hello` timeout; logs and closes on
/// anything that is not a usable hello.
async fn read_hello(
    state: &State,
    info: &ConnInfo,
    stream: &mut TcpStream,
    start: Instant,
    accept_sslv2: bool,
) -> Option<ClientHello> {
    // A stop does not wait for hellos that have not arrived.
    let read = tokio::select! {
        r = read_client_hello(stream, state.settings.timeouts.client_hello) => r,
        _ = state.stop.cancelled() => return None,
    };
    match read {
        Ok(hello) => Some(hello),
        // Passthrough can still route an SSLv2-format hello (as one without SNI).
        Err(HelloError::Sslv2 { hello }) if accept_sslv2 => Some(*hello),
        Err(e) => {
            let (outcome, hello) = match &e {
                HelloError::Sslv2 { hello } => ("failed", Some(&hello.info)),
                HelloError::NotTls { .. }
                | HelloError::Malformed(_)
                | HelloError::TooLarge { .. } => ("rejected", None),
                _ => ("failed", None),
            };
            let mut rec = record(state, info, hello);
            rec.outcome = outcome;
            rec.reason = Some(e.reason());
            rec.ms = millis(start.elapsed());
            if let HelloError::Sslv2 { .. } = e {
                rec.hint = Some(crate::tls::diagnose::SSLV2.into());
            }
            emit(state, info, &rec);
            None
        }
    }
}

async fn serve_https(
    state: Arc<State>,
    mut info: ConnInfo,
    mut stream: TcpStream,
    current: crate::state::Current,
) {
    let start = Instant::now();
    let settings = &state.listeners[info.listener].settings;
    let legacy = settings.legacy_upstream.clone();
    // With a legacy_upstream or legacy_tls an SSLv2-format hello is read
    // like any other: it goes there below.
    let accept_sslv2 = legacy.is_some() || settings.legacy_tls.is_some();
    let Some(hello) = read_hello(&state, &info, &mut stream, start, accept_sslv2).await else {
        return;
    };
    let listener = &state.listeners[info.listener];
    let mut rec = record(&state, &info, Some(&hello.info));
    // A strict listener refuses a hello whose name it has no certificate for
    // even when a legacy_upstream could take it: that upstream is for what a
    // client can do (versions, suites), not for names snigate was told to
    // refuse.
    let (certificate, fallback) = match state.certificates.select(
        &hello.info,
        listener.fallback,
        listener.settings.strict_sni,
    ) {
        Selection::Serve {
            certificate,
            fallback,
        } => (certificate, fallback),
        Selection::Refuse(reason) => {
            rec.reason = Some(reason);
            rec.hint = Some(crate::tls::diagnose::refusal_hint(hello.info.sni.is_some()).into());
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            let _ = stream.write_all(&ALERT_UNRECOGNIZED_NAME).await;
            return;
        }
    };
    let cert = state.certificates.get(certificate);
    rec.certificate = Some(cert.name.clone());
    rec.fallback = fallback;
    if let Some(upstream) = &legacy {
        // Before rustls sees the hello (a failed handshake cannot be undone):
        // a cheap look at what it offers, no handshake per connection.
        let config = &listener.server_configs[certificate];
        if let Err(reason) =
            crate::passthrough::legacy::can_serve(&hello.info, config, &cert.certified_key)
        {
            rec.reason = Some(reason);
            // Boxed: its state is no part of the HTTP connection's future.
            let forward = crate::passthrough::legacy::forward(
                &state,
                &info,
                stream,
                hello.bytes,
                upstream,
                rec,
                start,
            );
            Box::pin(forward).await;
            return;
        }
    }
    #[cfg(feature = "legacy-tls")]
    if !listener.legacy_tls.is_empty() {
        // As for legacy_upstream: decided before any handshake, and rustls
        // keeps every client it can serve.
        let config = &listener.server_configs[certificate];
        if let Err(reason) =
            crate::passthrough::legacy::can_serve(&hello.info, config, &cert.certified_key)
        {
            let serve = crate::frontend::legacy_tls::serve(
                state.clone(),
                info,
                stream,
                hello,
                certificate,
                rec,
                reason,
                start,
                current,
            );
            Box::pin(serve).await;
            return;
        }
    }
    let config = listener.server_configs[certificate].clone();
    let ClientHello { bytes, info: hello } = hello;
    let replay = PrefixedStream::new(bytes, stream);
    let handshake = Box::pin(tls::handshake(
        replay,
        config,
        state.settings.timeouts.handshake,
    ))
    .await;
    match handshake {
        Err(reason) => {
            let cert = state.certificates.get(certificate);
            let reason = crate::tls::diagnose::reason(&hello, &reason);
            rec.hint =
                crate::tls::diagnose::hint(&hello, &reason, cert.key_kind, &cert.name, fallback);
            rec.reason = Some(reason);
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
        }
        Ok((tls_stream, negotiated)) => {
            rec.outcome = "ok";
            rec.version = Some(negotiated.version);
            rec.suite = Some(negotiated.suite);
            rec.group = negotiated.group;
            rec.alpn = negotiated.alpn.clone();
            rec.resumed = negotiated.resumed;
            rec.ms = millis(start.elapsed());
            info.report = emit(&state, &info, &rec);
            established(&mut info, &hello, certificate);
            let h2 = negotiated.alpn.as_deref() == Some("h2");
            // The hello and its log line are done with: free them before a
            // connection that may stay open for hours.
            drop((rec, hello));
            let idle = state.settings.timeouts.client_idle;
            let Some(stream) =
                crate::http::handoff::first_bytes(tls_stream, idle, &state.stop).await
            else {
                return;
            };
            proxy::serve(state.clone(), Arc::new(info), stream, h2, current).await;
        }
    }
}

/// Passthrough: route the raw TLS stream by SNI and copy bytes both ways.
async fn serve_passthrough(state: Arc<State>, info: ConnInfo, mut stream: TcpStream) {
    let start = Instant::now();
    let Some(hello) = read_hello(&state, &info, &mut stream, start, true).await else {
        return;
    };
    let listener = &state.listeners[info.listener];
    let mut rec = record(&state, &info, Some(&hello.info));
    let sni = hello.info.sni_lowercase();
    let sni = sni.as_deref().map(|s| s.trim_end_matches('.'));
    let route = match listener.routes.route_sni(sni, listener.settings.strict_sni) {
        Ok(route) => route,
        Err(reason) => {
            rec.reason = Some(reason);
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            let _ = stream.write_all(&ALERT_HANDSHAKE_FAILURE).await;
            return;
        }
    };
    let upstream = &state.upstreams[route.upstream()];
    rec.upstream = Some(upstream.name.clone());
    rec.fallback = matches!(route, crate::route::RouteMatch::Default(_));
    let mut backend = match upstream.connect_raw(info.peer.ip()).await {
        Ok((server, b)) => {
            tracing::debug!(conn = info.conn, %server, "passthrough");
            b
        }
        Err(e) => {
            rec.reason = Some(e.to_string());
            rec.ms = millis(start.elapsed());
            emit(&state, &info, &rec);
            return;
        }
    };
    rec.outcome = "passthrough";
    rec.ms = millis(start.elapsed());
    emit(&state, &info, &rec);
    drop(rec);
    // The PROXY header first when the upstream asks for one, then the hello.
    let first = crate::passthrough::legacy::preamble(&state, upstream, &info, &hello.bytes);
    drop(hello);
    if backend.write_all(&first).await.is_err() {
        return;
    }
    drop(first);
    let idle = state.settings.timeouts.client_idle;
    crate::io::splice::copy_tcp_both_ways(stream, backend, idle).await;
}
