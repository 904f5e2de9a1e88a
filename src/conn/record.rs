//! The handshake log's line for a connection: made as the connection goes,
//! then written, counted and added to the report in one place.

use std::time::SystemTime;

use crate::conn::ConnInfo;
use crate::observe::handshake_log::HandshakeLine;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::report::ClientRef;
use crate::observe::telemetry::HandshakeRecord;
use crate::state::State;
use crate::tls::hello::ClientHelloInfo;

/// The handshake-log line for a connection, filled in as it goes.
pub fn record(state: &State, info: &ConnInfo, hello: Option<&ClientHelloInfo>) -> HandshakeLine {
    let logged = hello.filter(|_| state.handshake_log.is_some());
    let facts = hello.map(crate::conn::hello_facts::facts);
    let record = HandshakeRecord {
        ts: SystemTime::now(),
        event: "tls_handshake",
        conn: info.conn,
        listener: state.listener(info.listener).settings.name.clone(),
        local: info.local,
        peer: info.peer,
        sni: hello.and_then(|h| h.sni.clone()),
        fallback: false,
        certificate: None,
        offered_versions: hello.map(|h| h.offered_versions()).unwrap_or_default(),
        // Only the handshake log shows these (the report and metrics read
        // the versions and JA4): not computed without one.
        offered_suites: logged.map(|h| h.offered_suites_hex()).unwrap_or_default(),
        offered_alpn: logged.map(|h| h.alpn.clone()).unwrap_or_default(),
        ja3: logged.map(crate::tls::fingerprint::ja3).unwrap_or_default(),
        ja4: facts.as_ref().map(|f| f.ja4.clone()).unwrap_or_default(),
        outcome: HandshakeOutcome::Failed,
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
    };
    HandshakeLine {
        record,
        // What `report --against` replays: the handshake log writes it,
        // the report keeps it (GET /report/hellos).
        hello: facts.map(|f| f.logged.clone()),
    }
}

/// Writes a handshake-log line, counts it, and adds it to the report; the
/// report's handle when it tracks this client (no SNI, or a failure).
pub fn emit(state: &State, info: &ConnInfo, line: &HandshakeLine) -> Option<ClientRef> {
    let rec = &line.record;
    let listener = state.listener(info.listener);
    listener.metrics.handshake(rec.sni.is_some(), rec.outcome);
    if rec.outcome == HandshakeOutcome::Ok {
        listener.metrics.key_exchange(rec.group);
    }
    // Served = offered in a ServerHello, whether or not the client then
    // accepted it.
    if rec.fallback && rec.certificate.is_some() {
        listener.metrics.fallback_served();
    }
    match rec.outcome {
        HandshakeOutcome::Ok | HandshakeOutcome::Passthrough => {
            tracing::debug!(conn = rec.conn, listener = %rec.listener, peer = %rec.peer, sni = ?rec.sni, certificate = ?rec.certificate, outcome = rec.outcome.as_str(), "handshake")
        }
        HandshakeOutcome::LegacyPassthrough => {
            tracing::info!(conn = rec.conn, listener = %rec.listener, peer = %rec.peer, sni = ?rec.sni, upstream = ?rec.upstream, reason = ?rec.reason, "client rustls cannot serve handed to the legacy upstream")
        }
        HandshakeOutcome::Failed | HandshakeOutcome::Rejected => {
            tracing::info!(conn = rec.conn, listener = %rec.listener, peer = %rec.peer, sni = ?rec.sni, outcome = rec.outcome.as_str(), reason = ?rec.reason, "handshake not completed")
        }
    }
    if let Some(log) = &state.handshake_log {
        log.write(line);
    }
    state.report.handshake(rec, line.hello.as_deref())
}
