//! The handshake log's line for a connection: made as the connection goes,
//! then written, counted and added to the report in one place.

use std::cell::RefCell;
use std::sync::Arc;
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
        listener: shared(
            Field::Listener,
            &state.listener(info.listener).settings.name,
        ),
        local: info.local,
        peer: info.peer,
        sni: hello
            .and_then(|h| h.sni.as_deref())
            .map(|sni| shared(Field::Sni, sni)),
        fallback: false,
        certificate: None,
        offered_versions: hello.map(|h| h.offered_versions()).unwrap_or_default(),
        // Only the handshake log shows these (the report and metrics read
        // the versions and JA4): not computed without one.
        offered_suites: logged.map(|h| h.offered_suites_hex()).unwrap_or_default(),
        offered_alpn: logged.map(|h| h.alpn.clone()).unwrap_or_default(),
        ja3: logged.map(crate::tls::fingerprint::ja3).unwrap_or_default(),
        ja4: shared(Field::Ja4, facts.as_ref().map_or("", |f| f.ja4.as_str())),
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

/// Texts shared per worker thread: the last few listener names, SNIs and
/// JA4s put in a record, each kind apart (a flood of made-up SNIs does not
/// push out the listener names). A farm's connections repeat a handful of
/// each, so a record takes a reference to a text it shares instead of a
/// copy of its own (an allocation and a free, about 250 instructions under
/// callgrind, for each of the three).
const SHARED: usize = 16;

/// Longer texts are not kept (a made-up SNI can be long).
const SHARED_MAX_LEN: usize = 128;

/// Which texts: an index into the thread's [`Texts`].
#[derive(Clone, Copy)]
enum Field {
    Listener = 0,
    Sni = 1,
    Ja4 = 2,
}

thread_local! {
    static TEXTS: RefCell<[Texts; 3]> = const { RefCell::new([Texts::NEW, Texts::NEW, Texts::NEW]) };
}

struct Texts {
    kept: Vec<Arc<str>>,
    /// The one to replace next when `kept` is full.
    next: usize,
}

impl Texts {
    const NEW: Texts = Texts {
        kept: Vec::new(),
        next: 0,
    };
}

/// `text`, shared with earlier records of this thread when it is one of
/// the texts of `field` kept.
fn shared(field: Field, text: &str) -> Arc<str> {
    if text.len() > SHARED_MAX_LEN {
        return text.into();
    }
    TEXTS.with(|texts| {
        let texts = &mut texts.borrow_mut()[field as usize];
        if let Some(kept) = texts.kept.iter().find(|k| ***k == *text) {
            return kept.clone();
        }
        let new: Arc<str> = text.into();
        if texts.kept.len() < SHARED {
            texts.kept.push(new.clone());
        } else {
            let at = texts.next;
            texts.kept[at] = new.clone();
            texts.next = (at + 1) % SHARED;
        }
        new
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_shared_up_to_a_limit_and_always_equal() {
        let a = shared(Field::Listener, "main");
        assert!(Arc::ptr_eq(&a, &shared(Field::Listener, "main")));
        assert_eq!(&*shared(Field::Ja4, ""), "");
        let long = "x".repeat(SHARED_MAX_LEN + 1);
        let (l1, l2) = (shared(Field::Sni, &long), shared(Field::Sni, &long));
        assert!(!Arc::ptr_eq(&l1, &l2));
        assert_eq!(*l1, *long);
        // More distinct SNIs than are kept: each still comes back equal,
        // the oldest is replaced first, and the listener names stay.
        for i in 0..3 * SHARED {
            let sni = format!("s{i}.test");
            assert_eq!(*shared(Field::Sni, &sni), *sni);
        }
        TEXTS.with(|t| assert_eq!(t.borrow()[Field::Sni as usize].kept.len(), SHARED));
        let last = format!("s{}.test", 3 * SHARED - 1);
        assert!(Arc::ptr_eq(
            &shared(Field::Sni, &last),
            &shared(Field::Sni, &last)
        ));
        let kept = |sni: &str| {
            TEXTS.with(|t| {
                t.borrow()[Field::Sni as usize]
                    .kept
                    .iter()
                    .any(|k| **k == *sni)
            })
        };
        assert!(!kept("s0.test") && kept(&last));
        assert!(Arc::ptr_eq(&a, &shared(Field::Listener, "main")));
    }
}
