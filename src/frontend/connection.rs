//! One accepted client connection, in the order of DESIGN.md's data flow:
//! ClientHello -> certificate (or passthrough upstream) -> TLS -> HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::ListenerMode;
use crate::http::proxy::{self, ConnInfo};
use crate::io::replay::PrefixedStream;
use crate::observe::report::ClientRef;
use crate::observe::telemetry::{millis, timestamp, HandshakeRecord};
use crate::state::State;
use crate::tls::hello::{read_client_hello, ClientHello, ClientHelloInfo, HelloError};
use crate::tls::{self, Selection, ALERT_HANDSHAKE_FAILURE, ALERT_UNRECOGNIZED_NAME};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A new connection id, unique in this process.
pub fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

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
        match crate::conn::source_limit::admit(&state.listeners[listener], info.peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                crate::conn::source_limit::refuse(stream);
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

/// The client's address as an X-Forwarded-For value.
pub(crate) fn peer_ip(ip: std::net::IpAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&ip.to_string())
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// The handshake-log line for a connection, filled in as it goes.
pub(crate) fn record(
    state: &State,
    info: &ConnInfo,
    hello: Option<&ClientHelloInfo>,
) -> HandshakeRecord {
    let logged = hello.filter(|_| state.handshake_log.is_some());
    HandshakeRecord {
        ts: timestamp(SystemTime::now()),
        event: "tls_handshake",
        conn: info.conn,
        listener: state.listeners[info.listener].settings.name.clone(),
        local: info.local.to_string(),
        peer: info.peer.to_string(),
        sni: hello.and_then(|h| h.sni.clone()),
        fallback: false,
        certificate: None,
        offered_versions: hello.map(|h| h.offered_versions()).unwrap_or_default(),
        // Only the handshake log shows these (the report and metrics read
        // the versions and JA4): not computed without one.
        offered_suites: logged.map(|h| h.offered_suites_hex()).unwrap_or_default(),
        offered_alpn: logged.map(|h| h.alpn.clone()).unwrap_or_default(),
        ja3: logged.map(crate::tls::fingerprint::ja3).unwrap_or_default(),
        ja4: hello.map(crate::tls::fingerprint::ja4).unwrap_or_default(),
        outcome: "failed",
        version: None,
        suite: None,
        group: None,
        alpn: None,
        ms: 0.0,
        resumed: false,
        reason: None,
        hint: None,
        upstream: None,
        engine: None,
    }
}

/// Writes a handshake-log line, counts it, and adds it to the report; the
/// report's handle when it tracks this client (no SNI, or a failure).
pub(crate) fn emit(state: &State, info: &ConnInfo, rec: &HandshakeRecord) -> Option<ClientRef> {
    let listener = &state.listeners[info.listener];
    listener.metrics.handshake(rec.sni.is_some(), rec.outcome);
    if rec.outcome == "ok" {
        listener.metrics.key_exchange(rec.group);
    }
    // Served = offered in a ServerHello, whether or not the client then
    // accepted it.
    if rec.fallback && rec.certificate.is_some() {
        listener.metrics.fallback_served();
    }
    match rec.outcome {
        "ok" | "passthrough" => {
            tracing::debug!(conn = rec.conn, listener = %rec.listener, peer = %rec.peer, sni = ?rec.sni, certificate = ?rec.certificate, outcome = rec.outcome, "handshake")
        }
        "legacy_passthrough" => {
            tracing::info!(conn = rec.conn, listener = %rec.listener, peer = %rec.peer, sni = ?rec.sni, upstream = ?rec.upstream, reason = ?rec.reason, "client rustls cannot serve handed to the legacy upstream")
        }
        _ => {
            tracing::info!(conn = rec.conn, listener = %rec.listener, peer = %rec.peer, sni = ?rec.sni, outcome = rec.outcome, reason = ?rec.reason, "handshake not completed")
        }
    }
    if let Some(log) = &state.handshake_log {
        log.write(rec);
    }
    state.report.handshake(rec)
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
            let Some(stream) = first_bytes(tls_stream, idle, &state.stop).await else {
                return;
            };
            proxy::serve(state.clone(), Arc::new(info), stream, h2, current).await;
        }
    }
}

/// What HTTP needs to know of a completed TLS handshake (rustls or the
/// OpenSSL engine): the SNI for Host checks and the certificate served.
pub(crate) fn established(info: &mut ConnInfo, hello: &ClientHelloInfo, certificate: usize) {
    // An IP address in SNI is not a name (RFC 6066; wrk and some old
    // stacks send one): for Host checks it counts as no SNI.
    info.sni = hello
        .sni_lowercase()
        .map(|s| s.trim_end_matches('.').to_string())
        .filter(|s| s.parse::<std::net::IpAddr>().is_err());
    info.certificate = Some(certificate);
    info.tls = true;
}

/// Bytes read from a fresh connection before HTTP starts.
const FIRST_READ: usize = 64;

/// Waits (up to `idle`) for the client's first bytes and returns a stream
/// that replays them. The HTTP server allocates its 8 KiB read buffer as soon
/// as it starts, so starting it only when a request arrives keeps
/// connections that are opened ahead of use (browsers, the WebDAV
/// redirector, load tests) small.
pub(crate) async fn first_bytes<S>(
    mut stream: S,
    idle: std::time::Duration,
    cancel: &CancellationToken,
) -> Option<PrefixedStream<S>>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; FIRST_READ];
    let read = tokio::select! {
        r = tokio::time::timeout(idle, stream.read(&mut buf)) => r,
        _ = cancel.cancelled() => return None,
    };
    match read {
        Ok(Ok(n)) if n > 0 => Some(PrefixedStream::new(buf[..n].to_vec(), stream)),
        _ => None,
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
