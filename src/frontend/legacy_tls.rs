//! The optional OpenSSL engine (cargo feature `legacy-tls`, listener key
//! `legacy_tls`): clients rustls cannot serve — TLS 1.0/1.1, SSLv2-format
//! hellos, TLS 1.2 clients with only CBC suites or no signature scheme in
//! common — get their handshake from the system's OpenSSL instead of
//! failing, and are then routed and logged like any rustls connection.
//!
//! rustls stays the engine for every hello it can serve: the choice is
//! made before any handshake, by [`crate::tls::fit::can_serve`], from the
//! hello snigate read itself. OpenSSL negotiates at most TLS 1.2 (a client
//! that offers TLS 1.3 is rustls's), from the listener's `min_version`, with
//! its cipher string (`DEFAULT:@SECLEVEL=0` unless configured), and only
//! `http/1.1` by ALPN.

use std::pin::Pin;
use std::sync::Arc;

use openssl::ssl::Ssl;
use tokio_openssl::SslStream;

use crate::frontend::pending::Pending;
use crate::http::proxy;
use crate::io::replay::PrefixedStream;
use crate::observe::metrics::FailureReason;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::millis;
use crate::tls::hello::ClientHello;
use crate::tls::openssl::{failure_reason, negotiated, openssl_words, ENGINE};
use crate::tls::CertificateId;

/// Serves a client rustls cannot serve: the OpenSSL handshake (the hello
/// replayed) under the handshake timeout, its log line (`engine:
/// "openssl"`), then HTTP exactly as after a rustls handshake. `rustls_reason`
/// is why rustls could not serve it (kept in a failure's reason).
pub(crate) async fn serve(
    pending: Box<Pending>,
    certificate: CertificateId,
    rustls_reason: String,
) {
    let Pending {
        state,
        mut info,
        stream,
        hello,
        mut rec,
        start,
        current,
    } = *pending;
    rec.engine = Some(ENGINE);
    rec.hint = None;
    let listener = state.listener(info.listener);
    let Some(context) = listener.legacy_tls_context(certificate) else {
        // State::build makes one per certificate; be safe anyway.
        listener.metrics.failure(FailureReason::Internal);
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
            listener.metrics.failure(FailureReason::Internal);
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
        listener.metrics.failure(FailureReason::LegacyTls);
        rec.reason = Some(format!(
            "{reason} (rustls cannot serve this client: {rustls_reason})"
        ));
        rec.ms = millis(start.elapsed());
        crate::conn::emit(&state, &info, &rec);
        return;
    }
    let negotiated = negotiated(tls.ssl());
    rec.outcome = HandshakeOutcome::Ok;
    rec.reason = None;
    rec.version = Some(negotiated.version);
    rec.suite = Some(negotiated.suite);
    // `group` stays null: the openssl crate tells the negotiated group only
    // on OpenSSL 3 builds (`tmp_key`; SSL_get_negotiated_group is not
    // wrapped, SSL_get0_group_name needs 3.2), and this engine builds
    // against OpenSSL 1.1 as well. Counted as "none" in the metrics.
    rec.alpn = negotiated.alpn;
    rec.resumed = tls.ssl().session_reused();
    listener.metrics.legacy_tls();
    if rec.resumed {
        listener.metrics.resumed();
    }
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
