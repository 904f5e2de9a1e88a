//! The optional OpenSSL engine (cargo feature `legacy-tls`, listener key
//! `legacy_tls`): clients rustls cannot serve — TLS 1.0/1.1, SSLv2-format
//! hellos, TLS 1.2 clients with only CBC suites or no signature scheme in
//! common — get their handshake from the system's OpenSSL instead of
//! failing, and are then routed and logged like any rustls connection.
//!
//! rustls stays the engine for every hello it can serve: the choice is
//! made before any handshake, by [`crate::passthrough::legacy::can_serve`], from the
//! hello snigate read itself. OpenSSL negotiates at most TLS 1.2 (a client
//! that offers TLS 1.3 is rustls's), from the listener's `min_version`, with
//! its cipher string (`DEFAULT:@SECLEVEL=0` unless configured), and only
//! `http/1.1` by ALPN.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use openssl::ssl::{Ssl, SslRef, SslVersion};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::conn::ConnInfo;
use crate::http::proxy;
use crate::io::replay::PrefixedStream;
use crate::observe::telemetry::{millis, HandshakeRecord};
use crate::state::State;
use crate::tls::hello::ClientHello;
use crate::tls::openssl::openssl_words;
use crate::tls::CertificateId;

/// The `engine` of handshake-log lines for this engine.
pub const ENGINE: &str = "openssl";

/// What the handshake log says of a finished OpenSSL handshake.
struct Negotiated {
    version: &'static str,
    suite: String,
    alpn: Option<String>,
}

fn negotiated(ssl: &SslRef) -> Negotiated {
    let version = match ssl.version2() {
        Some(v) if v == SslVersion::TLS1_3 => "1.3",
        Some(v) if v == SslVersion::TLS1_2 => "1.2",
        Some(v) if v == SslVersion::TLS1_1 => "1.1",
        Some(v) if v == SslVersion::TLS1 => "1.0",
        Some(v) if v == SslVersion::SSL3 => "3.0",
        _ => "?",
    };
    let suite = ssl
        .current_cipher()
        .map(|c| c.standard_name().unwrap_or(c.name()).to_string())
        .unwrap_or_default();
    let alpn = ssl
        .selected_alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Negotiated {
        version,
        suite,
        alpn,
    }
}

/// A failed OpenSSL handshake in plain words.
fn failure_reason(e: &openssl::ssl::Error) -> String {
    const CLOSED: &str = "the client closed the connection during the handshake";
    if let Some(io) = e.io_error() {
        return match io.kind() {
            std::io::ErrorKind::UnexpectedEof => CLOSED.into(),
            std::io::ErrorKind::ConnectionReset => {
                "the client reset the connection during the handshake".into()
            }
            _ => format!("I/O error during the handshake: {io}"),
        };
    }
    match e.ssl_error() {
        Some(stack) => {
            let words = openssl_words(stack);
            if words.contains("unexpected eof") {
                CLOSED.into()
            } else {
                format!("OpenSSL: {words}")
            }
        }
        // SSL_ERROR_SYSCALL without an errno: end of stream.
        None if e.code() == openssl::ssl::ErrorCode::SYSCALL => CLOSED.into(),
        None => format!("OpenSSL: {e}"),
    }
}

/// Serves a client rustls cannot serve: the OpenSSL handshake (the hello
/// replayed) under the handshake timeout, its log line (`engine:
/// "openssl"`), then HTTP exactly as after a rustls handshake. `rustls_reason`
/// is why rustls could not serve it (kept in a failure's reason).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    state: Arc<State>,
    mut info: ConnInfo,
    stream: TcpStream,
    hello: ClientHello,
    certificate: CertificateId,
    mut rec: HandshakeRecord,
    rustls_reason: String,
    start: Instant,
    current: crate::state::Current,
) {
    rec.engine = Some(ENGINE);
    rec.hint = None;
    let listener = &state.listeners[info.listener];
    let Some(context) = listener.legacy_tls.get(certificate) else {
        // State::build makes one per certificate; be safe anyway.
        rec.reason = Some(format!(
            "no OpenSSL context for this certificate (rustls cannot serve this client: {rustls_reason})"
        ));
        rec.ms = millis(start.elapsed());
        crate::conn::emit(&state, &info, &rec);
        return;
    };
    let ClientHello { bytes, info: hello } = hello;
    let replay = PrefixedStream::new(bytes, stream);
    let mut tls = match Ssl::new(context).and_then(|ssl| SslStream::new(ssl, replay)) {
        Ok(s) => s,
        Err(e) => {
            rec.reason = Some(format!("cannot start OpenSSL: {}", openssl_words(&e)));
            rec.ms = millis(start.elapsed());
            crate::conn::emit(&state, &info, &rec);
            return;
        }
    };
    let timeout = state.settings.timeouts.handshake;
    let outcome = match tokio::time::timeout(timeout, Pin::new(&mut tls).accept()).await {
        Err(_) => Err("TLS handshake did not complete within the handshake timeout".to_string()),
        Ok(Err(e)) => Err(failure_reason(&e)),
        Ok(Ok(())) => Ok(()),
    };
    if let Err(reason) = outcome {
        rec.reason = Some(format!(
            "{reason} (rustls cannot serve this client: {rustls_reason})"
        ));
        rec.ms = millis(start.elapsed());
        crate::conn::emit(&state, &info, &rec);
        return;
    }
    let negotiated = negotiated(tls.ssl());
    rec.outcome = "ok";
    rec.reason = None;
    rec.version = Some(negotiated.version);
    rec.suite = Some(negotiated.suite);
    // `group` stays null: the openssl crate tells the negotiated group only
    // on OpenSSL 3 builds (`tmp_key`; SSL_get_negotiated_group is not
    // wrapped, SSL_get0_group_name needs 3.2), and this engine builds
    // against OpenSSL 1.1 as well. Counted as "none" in the metrics.
    rec.alpn = negotiated.alpn;
    rec.resumed = tls.ssl().session_reused();
    rec.ms = millis(start.elapsed());
    info.report = crate::conn::emit(&state, &info, &rec);
    crate::conn::established(&mut info, &hello, certificate);
    drop((rec, hello));
    let idle = state.settings.timeouts.client_idle;
    let Some(stream) = crate::http::handoff::first_bytes(tls, idle, &state.stop).await else {
        return;
    };
    proxy::serve(state.clone(), Arc::new(info), stream, false, current).await;
}
