//! `snigate explain HELLO [-c CONFIG] [--json]`: what a captured ClientHello says,
//! and what a configuration would do with it.
//!
//! The hello comes from a file: hex (whitespace ignored; Wireshark's "Copy as Hex
//! Stream", the `hexHandshakeBytes` of SSL Labs and testssl.sh) or the raw bytes. It
//! starts at a TLS record (`16 03 ..`), an SSLv2-compatible header (`80 ..`), or — a
//! convenience — at the handshake message itself (`01 ..`), which is then wrapped in
//! a record as a client would send it.
//!
//! The decode shows SNI, versions, suites, ALPN, signature algorithms, groups and
//! the JA3/JA4 fingerprints, and the client software the catalogue
//! ([`crate::observe::catalogue`]) names from the JA4, as the handshake log's
//! `client` does. Then, per listener of the configuration, what snigate
//! would do, decided by the very code and state the proxy uses: the decision as
//! [`crate::tls::predict::predict`] foresees it (the proxy's
//! [`crate::tls::decide::decide`]: certificate, strict refusals, rustls or a legacy
//! path; the same prediction `snigate report --against` makes), then the real TLS server of that listener and certificate, run in memory on
//! the hello's bytes (rustls, or OpenSSL for `legacy_tls`); its ServerHello gives the
//! version and suite, its error the same plain-words reason and hint as the handshake
//! log. An https listener that serves the hello also lists where the requests for
//! its SNI host go, path by path, as the listener's route table
//! ([`crate::route::RouteTable::route`]) answers (`--path` asks it for one path).
//! Passthrough listeners show the upstream the SNI routes to. Nothing is bound and
//! no file is written: the state is built with the handshake and access logs and the
//! admin endpoint cleared.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::config::{ListenerMode, RouteSettings, Settings};
use crate::observe::catalogue::{self, ClientKind};
use crate::route::RouteMatch;
use crate::state::{ListenerState, State};
use crate::tls::decide::{handshake_failure, Engine};
use crate::tls::failure::HandshakeFailure;
use crate::tls::fingerprint;
use crate::tls::hello::{is_grease, parse_client_hello, ClientHelloInfo, Parsed};
use crate::tls::predict::{predict, Outcome};

/// The configuration used when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "config/snigate.toml";

/// Files larger than this are not ClientHellos (hex doubles the 16 KiB limit; leave
/// room for whitespace).
const MAX_FILE: u64 = 256 * 1024;

/// Decodes the ClientHello in `hello` and explains it against `config` (or, when
/// `None`, [`DEFAULT_CONFIG`] if that file exists; else the decode alone). Writes
/// text, or one JSON object with `json`.
///
/// With `path` (`--path /owa/x`), each https listener also names the route
/// a request for that path takes.
pub fn run(
    hello: &Path,
    config: Option<&Path>,
    path: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let Some(p) = path.filter(|p| !p.starts_with('/')) {
        bail!("--path {p:?}: a request path starts with /");
    }
    let raw = read_hello_file(hello)?;
    let decoded = decode_file(&raw, hello)?;

    let config: Option<PathBuf> = match config {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.is_file()),
    };
    let state = match &config {
        Some(path) => Some(load_config(path)?),
        None => None,
    };
    let config = config.as_deref().zip(state.as_ref());
    let text = render(hello, &decoded, config, path, json)?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What `snigate explain` prints for a hello file whose contents are `raw` (hex or
/// the bytes themselves; `file` names it in the output and in errors), against the
/// configuration at `config` loaded with [`load_config`], or the decode alone. The
/// pure core of [`run`]: no file is read, nothing is bound or written.
pub fn explain_hello(
    raw: &[u8],
    file: &Path,
    config: Option<(&Path, &State)>,
    json: bool,
) -> anyhow::Result<String> {
    let decoded = decode_file(raw, file)?;
    render(file, &decoded, config, None, json)
}

/// The report on `decoded` as text, or as one JSON object with `json`.
fn render(
    file: &Path,
    decoded: &Decoded,
    config: Option<(&Path, &State)>,
    path: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    let listeners =
        config.map(|(_, state)| explain_listeners(state, decoded.hello(), &decoded.info, path));
    let report = Report::new(file, decoded, config.map(|(path, _)| path), listeners);
    if json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        Ok(text)
    } else {
        Ok(report.text())
    }
}

// ---------------------------------------------------------------------------
// Reading the file
// ---------------------------------------------------------------------------

/// The contents of a hello file, its size checked.
fn read_hello_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory, not a ClientHello file", path.display());
    }
    if meta.len() > MAX_FILE {
        bail!(
            "{} is {} bytes: too large for a ClientHello (at most {} bytes, or twice that in hex)",
            path.display(),
            meta.len(),
            crate::tls::hello::MAX_CLIENT_HELLO
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The hello in a file's contents `raw` (hex or bytes), parsed; `path` names the
/// file in errors.
fn decode_file(raw: &[u8], path: &Path) -> anyhow::Result<Decoded> {
    let bytes = from_hex_or_raw(raw).with_context(|| format!("{}", path.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty", path.display());
    }
    decode(bytes).with_context(|| format!("{}", path.display()))
}

/// Hex if every non-whitespace byte is a hex digit (a binary hello never is: it
/// starts with 0x16 or a byte >= 0x80), else the bytes themselves.
fn from_hex_or_raw(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Ok(raw.to_vec());
    }
    if !digits.len().is_multiple_of(2) {
        bail!(
            "odd number of hex digits ({}): truncated hex?",
            digits.len()
        );
    }
    Ok(digits
        .chunks_exact(2)
        .map(|p| (hex_value(p[0]) << 4) | hex_value(p[1]))
        .collect())
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        b'A'..=b'F' => d - b'A' + 10,
        _ => 0,
    }
}

/// A parsed hello and the bytes it came from.
struct Decoded {
    info: ClientHelloInfo,
    /// What a client would have sent: the file's bytes, or the bare handshake
    /// message wrapped in a record.
    bytes: Vec<u8>,
    /// How many of `bytes` the hello occupies.
    consumed: usize,
    /// The file held a bare handshake message.
    wrapped: bool,
    /// The hello's bytes in the file.
    file_len: usize,
}

impl Decoded {
    /// The hello's record(s), as rustls is to read them.
    fn hello(&self) -> &[u8] {
        self.bytes.get(..self.consumed).unwrap_or(&self.bytes)
    }
}

/// Parses the hello; a bare handshake message is wrapped in a record first.
fn decode(bytes: Vec<u8>) -> anyhow::Result<Decoded> {
    let file_len = bytes.len();
    let (bytes, wrapped) = match bare_handshake_message(&bytes) {
        Some(record) => (record, true),
        None => (bytes, false),
    };
    match parse_client_hello(&bytes) {
        Ok(Parsed::Complete(info, consumed)) => Ok(Decoded {
            info,
            bytes,
            consumed,
            wrapped,
            file_len,
        }),
        Ok(Parsed::Incomplete) => Err(anyhow!(
            "incomplete ClientHello: the file ends after {file_len} bytes, before the message does"
        )),
        Err(e) => Err(anyhow!("{}", e.reason())),
    }
}

/// A handshake message (type 1, 3-byte length matching the input) without its
/// record header: wrapped in one TLS 1.0 handshake record.
fn bare_handshake_message(bytes: &[u8]) -> Option<Vec<u8>> {
    let (&ty, len) = (bytes.first()?, bytes.get(1..4)?);
    let len = (usize::from(len[0]) << 16) | (usize::from(len[1]) << 8) | usize::from(len[2]);
    if ty != 1 || 4 + len != bytes.len() || bytes.len() > 1 << 14 {
        return None;
    }
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_be_bytes());
    record.extend_from_slice(bytes);
    Some(record)
}

// ---------------------------------------------------------------------------
// What the configuration does
// ---------------------------------------------------------------------------

/// One listener's answer to the hello.
#[derive(Debug, Serialize)]
struct ListenerOutcome {
    listener: String,
    mode: &'static str,
    bind: Vec<String>,
    certificate: Option<String>,
    /// The certificate's key type: "ecdsa", "rsa" or "ed25519".
    certificate_key: Option<&'static str>,
    fallback: bool,
    outcome: Outcome,
    version: Option<&'static str>,
    suite: Option<String>,
    alpn: Option<String>,
    reason: Option<String>,
    hint: Option<String>,
    upstream: Option<String>,
    /// "openssl" when `legacy_tls` serves the hello; absent for rustls.
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// https, when the handshake succeeds and the hello has SNI: where the
    /// requests for that host go, by path (see [`RouteView`]).
    routes: Vec<RouteView>,
    /// With `--path`: the route a request for that path (and the SNI host)
    /// takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathView>,
}

/// Where requests for the SNI host go on a listener: one entry per route
/// that holds some of its paths (`paths`: the prefixes it holds there), and
/// last the taker of every other path (`paths` empty): a route without
/// `paths`, or the listener's `default_upstream` (`name` null), or nothing
/// (`upstream` null too: snigate answers 404).
#[derive(Debug, Serialize)]
struct RouteView {
    name: Option<String>,
    paths: Vec<String>,
    upstream: Option<String>,
}

/// `--path`: the route one request path takes (`route` null: the
/// listener's `default_upstream`; `upstream` null too: 404).
#[derive(Debug, Serialize)]
struct PathView {
    path: String,
    route: Option<String>,
    upstream: Option<String>,
}

impl ListenerOutcome {
    fn new(l: &ListenerState, mode: &'static str) -> Self {
        ListenerOutcome {
            listener: l.settings.name.clone(),
            mode,
            bind: l.settings.bind.iter().map(|a| a.to_string()).collect(),
            certificate: None,
            certificate_key: None,
            fallback: false,
            outcome: Outcome::Failed,
            version: None,
            suite: None,
            alpn: None,
            reason: None,
            hint: None,
            upstream: None,
            engine: None,
            note: None,
            routes: Vec::new(),
            path: None,
        }
    }
}

/// Loads the configuration at `path` as `explain` uses it: logs and admin cleared,
/// so nothing is written and nothing bound.
pub fn load_config(path: &Path) -> anyhow::Result<State> {
    let mut settings = Settings::load(path).map_err(|e| anyhow!("{e}"))?;
    settings.log.handshake_log = None;
    settings.log.access_log = None;
    settings.admin = None;
    State::build(settings).map_err(|errors| {
        anyhow!(
            "{}: the configuration does not load:\n{}",
            path.display(),
            errors.join("\n")
        )
    })
}

/// Runs the hello through every TLS listener of `state`; `path` as in [`run`].
fn explain_listeners(
    state: &State,
    hello: &[u8],
    info: &ClientHelloInfo,
    path: Option<&str>,
) -> Vec<ListenerOutcome> {
    let mut outcomes = Vec::new();
    for l in &state.listeners {
        match l.settings.mode {
            ListenerMode::Https => {
                let mut o = explain_https(state, l, hello, info);
                if o.outcome == Outcome::Ok {
                    if let Some(host) = info.server_name() {
                        o.routes = routes_for_host(state, l, &host);
                        o.path = path.map(|p| path_view(state, l, &host, p));
                    }
                }
                outcomes.push(o);
            }
            ListenerMode::Passthrough => outcomes.push(explain_passthrough(state, l, info)),
            ListenerMode::Http => {}
        }
    }
    outcomes
}

/// An https listener: the proxy's own decision, as foreseen by [`predict`],
/// then for a hello rustls is given the real rustls handshake in memory on
/// its bytes (which has the last word: version, suite, or the error).
fn explain_https(
    state: &State,
    l: &ListenerState,
    hello: &[u8],
    info: &ClientHelloInfo,
) -> ListenerOutcome {
    let mut o = ListenerOutcome::new(l, "https");
    let predicted = predict(l.tls(), info, &state.certificates);
    let Some(served) = predicted.served else {
        o.outcome = predicted.outcome;
        o.reason = predicted.reason;
        o.hint = predicted.hint;
        return o;
    };
    let cert = state.certificates.get(served.certificate);
    o.certificate = Some(cert.name.clone());
    o.certificate_key = Some(cert.key_kind.as_str());
    o.fallback = served.fallback;
    match &served.engine {
        Engine::Rustls => {}
        Engine::LegacyUpstream { upstream, reason } => {
            // As in the handshake log: nothing of snigate's is served.
            o.certificate = None;
            o.certificate_key = None;
            o.fallback = false;
            o.outcome = Outcome::LegacyPassthrough;
            o.upstream = Some(upstream.clone());
            o.reason = Some(reason.clone());
            o.note = Some(format!(
                "forwarded byte for byte to the listener's legacy_upstream, which does the TLS handshake (rustls was checked with certificate \"{}\")",
                cert.name
            ));
            return o;
        }
        Engine::LegacyTls { reason } => {
            explain_legacy_tls(&mut o, l, served.certificate, hello, reason);
            return o;
        }
    }
    // decide() found the configuration; the state holds one per certificate.
    let config = l.server_config(served.certificate).clone();
    match handshake_in_memory(config, hello) {
        Ok(hs) => {
            o.outcome = Outcome::Ok;
            o.version = Some(hs.version);
            o.suite = Some(hs.suite);
            o.alpn = hs.alpn;
            o.note = hs.note;
        }
        Err(Failure::Tls(err)) => {
            // As the proxy: made precise by what the hello shows.
            let failure = HandshakeFailure::from(err);
            let (reason, hint) = handshake_failure(info, &served, &state.certificates, &failure);
            o.hint = hint;
            o.reason = Some(reason);
        }
        Err(Failure::Other(reason)) => o.reason = Some(reason),
    }
    o
}

/// A hello that `legacy_tls` serves: OpenSSL's answer, from the listener's
/// own OpenSSL context run in memory on the hello's bytes.
#[cfg(feature = "legacy-tls")]
fn explain_legacy_tls(
    o: &mut ListenerOutcome,
    l: &ListenerState,
    certificate: crate::tls::CertificateId,
    hello: &[u8],
    rustls_reason: &str,
) {
    o.engine = Some(crate::tls::openssl::ENGINE);
    let Some(context) = l.legacy_tls_context(certificate) else {
        o.reason = Some(format!(
            "no OpenSSL context for this certificate (rustls cannot serve this client: {rustls_reason})"
        ));
        return;
    };
    match crate::tls::openssl::handshake_in_memory(context, hello) {
        Ok(negotiated) => {
            o.outcome = Outcome::Ok;
            o.version = Some(negotiated.version);
            o.suite = Some(negotiated.suite);
            o.alpn = negotiated.alpn;
            o.note = Some(format!(
                "served by OpenSSL (legacy_tls): rustls cannot serve this client: {rustls_reason}"
            ));
        }
        Err(reason) => {
            o.reason = Some(format!(
                "{reason} (rustls cannot serve this client: {rustls_reason})"
            ))
        }
    }
}

/// A hello that `legacy_tls` would serve, in a build without OpenSSL: a
/// configuration with `legacy_tls` does not load in such a build.
#[cfg(not(feature = "legacy-tls"))]
fn explain_legacy_tls(
    o: &mut ListenerOutcome,
    _l: &ListenerState,
    _certificate: crate::tls::CertificateId,
    _hello: &[u8],
    rustls_reason: &str,
) {
    o.reason = Some(format!(
        "this build has no legacy-tls engine (rustls cannot serve this client: {rustls_reason})"
    ));
}

/// A passthrough listener: the upstream the SNI routes to, as serve_passthrough does.
fn explain_passthrough(
    state: &State,
    l: &ListenerState,
    info: &ClientHelloInfo,
) -> ListenerOutcome {
    let mut o = ListenerOutcome::new(l, "passthrough");
    let sni = info.server_name();
    let sni = sni.as_deref();
    match l.routes.route_sni(sni, l.settings.strict_sni) {
        Err(reason) => {
            o.outcome = Outcome::Refused;
            o.reason = Some(reason);
        }
        Ok(route) => {
            o.outcome = Outcome::Passthrough;
            o.fallback = matches!(route, RouteMatch::Default(_));
            o.upstream = state
                .upstreams
                .get(route.upstream().index())
                .map(|u| u.name.clone());
            o.note = Some(
                if o.fallback {
                    "routed to the listener's default_upstream; the backend does the TLS handshake"
                } else {
                    "routed by SNI; the backend does the TLS handshake"
                }
                .into(),
            );
        }
    }
    o
}

/// The names of what the route table chose: route and upstream (`None`,
/// `None` when nothing takes the request).
fn route_names(state: &State, m: Option<RouteMatch>) -> (Option<String>, Option<String>) {
    let route = m
        .and_then(RouteMatch::route)
        .and_then(|id| state.settings.routes.get(id.index()))
        .map(|r| r.name.clone());
    let upstream = m
        .and_then(|m| state.upstreams.get(m.upstream().index()))
        .map(|u| u.name.clone());
    (route, upstream)
}

/// Where the requests for `host` go on listener `l`, by path: asked of the
/// listener's own route table ([`crate::route::RouteTable::route`]), route
/// by route and prefix by prefix, so that only what the proxy would really
/// pick is listed (a less specific host's routes, or a prefix another route
/// claimed first, are not).
fn routes_for_host(state: &State, l: &ListenerState, host: &str) -> Vec<RouteView> {
    let mut views = Vec::new();
    let applies = |(_, r): &(usize, &RouteSettings)| r.applies_to(&l.settings.name);
    for (index, r) in state.settings.routes.iter().enumerate().filter(applies) {
        let held: Vec<String> = r
            .paths
            .iter()
            .filter(|p| {
                l.routes
                    .route(Some(host), Some(p))
                    .and_then(RouteMatch::route)
                    .is_some_and(|id| id.index() == index)
            })
            .cloned()
            .collect();
        if !held.is_empty() {
            views.push(RouteView {
                name: Some(r.name.clone()),
                paths: held,
                upstream: Some(r.upstream.clone()),
            });
        }
    }
    let (name, upstream) = route_names(state, l.routes.route(Some(host), None));
    views.push(RouteView {
        name,
        paths: Vec::new(),
        upstream,
    });
    views
}

/// `--path`: the route a request for `path` on `host` takes on `l`.
fn path_view(state: &State, l: &ListenerState, host: &str, path: &str) -> PathView {
    let (route, upstream) = route_names(state, l.routes.route(Some(host), Some(path)));
    PathView {
        path: path.to_string(),
        route,
        upstream,
    }
}

/// What the in-memory handshake came to.
struct Handshake {
    version: &'static str,
    suite: String,
    alpn: Option<String>,
    note: Option<String>,
}

enum Failure {
    /// rustls refused the hello.
    Tls(rustls::Error),
    /// Something else (in words).
    Other(String),
}

/// Feeds `hello` to a fresh rustls server connection and reads back its first
/// flight: the ServerHello says which version and suite it chose.
fn handshake_in_memory(
    config: Arc<rustls::ServerConfig>,
    hello: &[u8],
) -> Result<Handshake, Failure> {
    let mut conn = rustls::ServerConnection::new(config).map_err(Failure::Tls)?;
    let mut rest = hello;
    while !rest.is_empty() {
        match conn.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(Failure::Other(format!(
                    "rustls did not take the bytes: {e}"
                )))
            }
        }
        conn.process_new_packets().map_err(Failure::Tls)?;
    }
    let mut flight = Vec::new();
    while conn.wants_write() {
        match conn.write_tls(&mut flight) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(Failure::Other(format!("cannot read rustls's answer: {e}"))),
        }
    }
    let sh = parse_server_hello(&flight).ok_or_else(|| {
        Failure::Other(format!(
            "rustls answered without a ServerHello ({} bytes): the hello may be incomplete",
            flight.len()
        ))
    })?;
    let version = match sh.version {
        0x0304 => "1.3",
        0x0303 => "1.2",
        _ => "?",
    };
    // The name the handshake log gives the suite (rustls's).
    let suite = format!("{:?}", rustls::CipherSuite::from(sh.suite));
    let note = sh.retry.then(|| {
        "HelloRetryRequest: the client's key shares are for groups snigate does not use; it must send a second ClientHello with a share for one it offered in supported_groups".to_string()
    });
    Ok(Handshake {
        version,
        suite,
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        note,
    })
}

/// The fields of a ServerHello explain reports.
struct ServerHello {
    version: u16,
    suite: u16,
    retry: bool,
}

/// SHA-256("HelloRetryRequest"): the random of a HelloRetryRequest (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// The ServerHello at the start of a server's first flight (one TLS record that
/// begins with it; rustls never splits it).
fn parse_server_hello(flight: &[u8]) -> Option<ServerHello> {
    let be16 = |b: &[u8], at: usize| Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    if *flight.first()? != 0x16 {
        return None;
    }
    let len = usize::from(be16(flight, 3)?);
    let msg = flight.get(5..5 + len)?;
    if *msg.first()? != 2 {
        return None;
    }
    let legacy_version = be16(msg, 4)?;
    let random = msg.get(6..38)?;
    let sid_len = usize::from(*msg.get(38)?);
    let at = 39 + sid_len;
    let suite = be16(msg, at)?;
    // Compression (1), then the extensions block.
    let mut version = legacy_version;
    if let Some(ext_len) = be16(msg, at + 3) {
        let mut ext = msg.get(at + 5..at + 5 + usize::from(ext_len))?;
        while ext.len() >= 4 {
            let (ty, len) = (be16(ext, 0)?, usize::from(be16(ext, 2)?));
            let data = ext.get(4..4 + len)?;
            if ty == 0x002b {
                version = be16(data, 0)?;
            }
            ext = &ext[4 + len..];
        }
    }
    Some(ServerHello {
        version,
        suite,
        retry: random == HRR_RANDOM,
    })
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct Named {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct Suite {
    id: String,
    name: String,
    /// snigate (rustls) implements this suite.
    snigate: bool,
}

#[derive(Serialize)]
struct Report {
    file: String,
    /// Bytes of the hello, record headers included.
    bytes: usize,
    /// The file held the bare handshake message, wrapped in a record for rustls.
    wrapped: bool,
    /// Bytes in the file after the hello (not part of it, ignored).
    trailing: usize,
    /// "tls" or "sslv2" (the SSLv2-compatible hello of old Java and OpenSSL).
    format: &'static str,
    record_version: String,
    client_version: String,
    sni: Option<String>,
    /// The server_name extension is present (JA4's `d`), even if `sni` is null.
    sni_extension: bool,
    versions: Vec<&'static str>,
    suites: Vec<Suite>,
    alpn: Vec<String>,
    signature_algorithms: Vec<Named>,
    groups: Vec<Named>,
    ec_point_formats: Vec<Named>,
    extensions: Vec<Named>,
    ja3: String,
    ja3_string: String,
    ja4: String,
    ja4_r: String,
    /// The client software the catalogue names from `ja4`, as the
    /// handshake log's `client`; null when it does not know it.
    client: Option<&'static str>,
    /// What the catalogue says of that client; null with `client`.
    client_note: Option<&'static str>,
    /// The catalogue entry (text: its key too).
    #[serde(skip)]
    client_entry: Option<&'static ClientKind>,
    /// The configuration used, or null for the decode alone.
    config: Option<String>,
    listeners: Vec<ListenerOutcome>,
}

impl Report {
    fn new(
        file: &Path,
        decoded: &Decoded,
        config: Option<&Path>,
        listeners: Option<Vec<ListenerOutcome>>,
    ) -> Self {
        let info = &decoded.info;
        let ja4 = fingerprint::ja4(info);
        let client = catalogue::identify(&ja4);
        let served: Vec<u16> = crate::tls::crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        let named = |values: &[u16], name: fn(u16) -> Option<&'static str>| -> Vec<Named> {
            values
                .iter()
                .map(|v| Named {
                    id: format!("{v:#06x}"),
                    name: display_name(*v, name),
                })
                .collect()
        };
        Report {
            file: file.display().to_string(),
            bytes: decoded.consumed,
            wrapped: decoded.wrapped,
            trailing: if decoded.wrapped {
                0
            } else {
                decoded.file_len.saturating_sub(decoded.consumed)
            },
            format: if info.sslv2 { "sslv2" } else { "tls" },
            record_version: format!("{:#06x}", info.record_version),
            client_version: format!("{:#06x}", info.client_version),
            sni: info.sni.clone(),
            sni_extension: info.extensions.contains(&0),
            versions: info.offered_versions(),
            suites: info
                .cipher_suites
                .iter()
                .map(|s| Suite {
                    id: format!("{s:#06x}"),
                    name: display_name(*s, suite_name),
                    snigate: served.contains(s),
                })
                .collect(),
            alpn: info.alpn.clone(),
            signature_algorithms: named(&info.signature_algorithms, sigalg_name),
            groups: named(&info.groups, crate::tls::groups::name),
            ec_point_formats: info
                .ec_point_formats
                .iter()
                .map(|f| Named {
                    id: format!("{f:#04x}"),
                    name: point_format_name(*f).to_string(),
                })
                .collect(),
            extensions: named(&info.extensions, extension_name),
            ja3: fingerprint::ja3(info),
            ja3_string: fingerprint::ja3_string(info),
            ja4_r: fingerprint::ja4_raw(info),
            ja4,
            client: client.map(|c| c.name.as_str()),
            client_note: client.map(|c| c.note.as_str()),
            client_entry: client,
            config: config.map(|p| p.display().to_string()),
            listeners: listeners.unwrap_or_default(),
        }
    }

    fn text(&self) -> String {
        let mut s = String::with_capacity(4096);
        let list = |items: &[Named]| -> String {
            if items.is_empty() {
                return "(none)".into();
            }
            items
                .iter()
                .map(|n| {
                    if n.name.starts_with("0x") {
                        n.name.clone()
                    } else {
                        format!("{} ({})", n.name, n.id)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "{:<16}{}: {} bytes, {}",
            "ClientHello",
            self.file,
            self.bytes,
            if self.format == "sslv2" {
                "SSLv2-compatible format (rustls cannot read it)".to_string()
            } else {
                format!("TLS record version {}", self.record_version)
            }
        );
        if self.wrapped {
            let _ = writeln!(
                s,
                "{:<16}(the file holds the handshake message alone; wrapped in a record)",
                ""
            );
        }
        if self.trailing > 0 {
            let _ = writeln!(
                s,
                "{:<16}{} more bytes after the hello, not part of it (ignored)",
                "", self.trailing
            );
        }
        let sni = match (&self.sni, self.sni_extension) {
            (Some(name), _) => name.clone(),
            (None, true) => "(server_name extension without a host name)".into(),
            (None, false) => "(none: the client sent no SNI)".into(),
        };
        let _ = writeln!(s, "{:<16}{sni}", "SNI");
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|v| match *v {
                "3.0" => "SSL 3.0".to_string(),
                v => format!("TLS {v}"),
            })
            .collect();
        let _ = writeln!(
            s,
            "{:<16}{} (client_version {}{})",
            "Versions",
            if versions.is_empty() {
                "(none snigate knows)".to_string()
            } else {
                versions.join(", ")
            },
            self.client_version,
            if self.extensions.iter().any(|e| e.id == "0x002b") {
                ", supported_versions extension"
            } else {
                ", no supported_versions extension"
            }
        );
        let _ = writeln!(
            s,
            "{:<16}{} (* = snigate can serve it)",
            "Cipher suites",
            self.suites.len()
        );
        for suite in &self.suites {
            let _ = writeln!(
                s,
                "{:<14}{} {}  {}",
                "",
                if suite.snigate { "*" } else { " " },
                suite.id,
                suite.name
            );
        }
        let _ = writeln!(
            s,
            "{:<16}{}",
            "ALPN",
            if self.alpn.is_empty() {
                "(none)".to_string()
            } else {
                self.alpn.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "{:<16}{}",
            "Signature algs",
            list(&self.signature_algorithms)
        );
        let _ = writeln!(s, "{:<16}{}", "Groups", list(&self.groups));
        let _ = writeln!(s, "{:<16}{}", "Point formats", list(&self.ec_point_formats));
        let _ = writeln!(s, "{:<16}{}", "Extensions", list(&self.extensions));
        let _ = writeln!(s, "{:<16}{}", "JA3", self.ja3);
        let _ = writeln!(s, "{:<16}{}", "JA3 string", self.ja3_string);
        let _ = writeln!(s, "{:<16}{}", "JA4", self.ja4);
        let _ = writeln!(s, "{:<16}{}", "JA4_r", self.ja4_r);
        match self.client_entry {
            Some(entry) => {
                let _ = writeln!(s, "{:<16}{}", "Client", entry.name);
                let _ = writeln!(s, "{:<16}(catalogue entry: {})", "", entry.pattern);
                for line in wrap(&entry.note, 72) {
                    let _ = writeln!(s, "{:<16}{line}", "");
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "{:<16}unknown (no catalogue entry for this JA4)",
                    "Client"
                );
            }
        }
        s.push('\n');
        let Some(config) = &self.config else {
            let _ = writeln!(
                s,
                "No configuration used ({DEFAULT_CONFIG} not found; pass -c FILE to see what a configuration does with this hello)."
            );
            return s;
        };
        let _ = writeln!(s, "{:<16}{config}", "Configuration");
        if self.listeners.is_empty() {
            let _ = writeln!(s, "{:<16}(no https or passthrough listener)", "");
        }
        for l in &self.listeners {
            let _ = writeln!(
                s,
                "\nlistener \"{}\" ({}, {})",
                l.listener,
                l.mode,
                l.bind.join(" ")
            );
            if let Some(c) = &l.certificate {
                let _ = writeln!(
                    s,
                    "  {:<13}{c} ({}, {})",
                    "certificate",
                    l.certificate_key.unwrap_or("?"),
                    if l.fallback {
                        "the listener's fallback_certificate"
                    } else {
                        "matched by SNI"
                    }
                );
            }
            match l.outcome {
                Outcome::Ok => {
                    let _ = writeln!(
                        s,
                        "  {:<13}ok: TLS {} {}{}{}",
                        "outcome",
                        l.version.unwrap_or("?"),
                        l.suite.as_deref().unwrap_or("?"),
                        l.alpn
                            .as_deref()
                            .map(|a| format!(", ALPN {a}"))
                            .unwrap_or_default(),
                        l.engine
                            .map(|e| format!(" (engine {e})"))
                            .unwrap_or_default()
                    );
                }
                Outcome::Passthrough => {
                    let _ = writeln!(
                        s,
                        "  {:<13}passthrough to upstream \"{}\"",
                        "outcome",
                        l.upstream.as_deref().unwrap_or("?")
                    );
                }
                other @ (Outcome::Failed | Outcome::Refused | Outcome::LegacyPassthrough) => {
                    let _ = writeln!(
                        s,
                        "  {:<13}{}: {}",
                        "outcome",
                        other.as_str(),
                        l.reason.as_deref().unwrap_or("?")
                    );
                }
            }
            if let Some(h) = &l.hint {
                let _ = writeln!(s, "  {:<13}{h}", "hint");
            }
            if let Some(n) = &l.note {
                let _ = writeln!(s, "  {:<13}{n}", "note");
            }
            if let (Some(host), Some((rest, by_path))) = (&self.sni, l.routes.split_last()) {
                let _ = writeln!(s, "  {:<13}requests for {host}:", "routes");
                for r in by_path {
                    let _ = writeln!(s, "{:<17}{} -> {}", "", r.paths.join(", "), r.target());
                }
                let rest_label = if by_path.is_empty() {
                    "every path"
                } else {
                    "other paths"
                };
                let _ = writeln!(s, "{:<17}{rest_label} -> {}", "", rest.target());
            }
            if l.mode == "https" && l.outcome == Outcome::Ok && self.sni.is_none() {
                let _ = writeln!(
                    s,
                    "  {:<13}no SNI: each request is routed by its Host header",
                    "routes"
                );
            }
            if let Some(p) = &l.path {
                let target = target(p.route.as_deref(), p.upstream.as_deref());
                let _ = writeln!(s, "  {:<13}{} -> {target}", "path", p.path);
            }
        }
        s
    }
}

impl RouteView {
    /// Where it sends requests, in words.
    fn target(&self) -> String {
        target(self.name.as_deref(), self.upstream.as_deref())
    }
}

/// Where a route (`None`: the default upstream) sends requests, in words.
fn target(route: Option<&str>, upstream: Option<&str>) -> String {
    match (route, upstream) {
        (Some(route), Some(u)) => format!("upstream {u} (route {route})"),
        (None, Some(u)) => format!("upstream {u} (the listener's default_upstream)"),
        _ => "404 Not Found (no route, no default_upstream)".into(),
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (a
/// longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `name(v)`, "GREASE" for GREASE values, else the hex value itself.
fn display_name(v: u16, name: fn(u16) -> Option<&'static str>) -> String {
    if is_grease(v) {
        return "GREASE".into();
    }
    match name(v) {
        Some(n) => n.to_string(),
        None => format!("{v:#06x}"),
    }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// The IANA name of a cipher suite. tls-parser carries the whole IANA registry
/// (legacy RSA, CBC, 3DES, RC4, export and SCSV values included); the few pre-IANA
/// values old browsers still send are added here.
pub fn suite_name(id: u16) -> Option<&'static str> {
    if let Some(cs) = tls_parser::TlsCipherSuite::from_id(id) {
        return Some(cs.name);
    }
    Some(match id {
        0x0061 => "TLS_RSA_EXPORT1024_WITH_RC2_CBC_56_MD5",
        0x0065 => "TLS_DHE_DSS_EXPORT1024_WITH_RC4_56_SHA",
        0xfefe => "SSL_RSA_FIPS_WITH_DES_CBC_SHA",
        0xfeff => "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA",
        0xffe0 => "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA (Netscape)",
        0xffe1 => "SSL_RSA_FIPS_WITH_DES_CBC_SHA (Netscape)",
        _ => return None,
    })
}

/// TLS 1.3 SignatureScheme names; TLS 1.2 (hash, signature) pairs by the same code
/// points.
pub fn sigalg_name(v: u16) -> Option<&'static str> {
    Some(match v {
        0x0101 => "rsa_md5",
        0x0201 => "rsa_pkcs1_sha1",
        0x0202 => "dsa_sha1",
        0x0203 => "ecdsa_sha1",
        0x0301 => "rsa_sha224",
        0x0302 => "dsa_sha224",
        0x0303 => "ecdsa_sha224",
        0x0401 => "rsa_pkcs1_sha256",
        0x0402 => "dsa_sha256",
        0x0403 => "ecdsa_secp256r1_sha256",
        0x0420 => "rsa_pkcs1_sha256_legacy",
        0x0501 => "rsa_pkcs1_sha384",
        0x0502 => "dsa_sha384",
        0x0503 => "ecdsa_secp384r1_sha384",
        0x0520 => "rsa_pkcs1_sha384_legacy",
        0x0601 => "rsa_pkcs1_sha512",
        0x0602 => "dsa_sha512",
        0x0603 => "ecdsa_secp521r1_sha512",
        0x0620 => "rsa_pkcs1_sha512_legacy",
        0x0708 => "sm2sig_sm3",
        0x0804 => "rsa_pss_rsae_sha256",
        0x0805 => "rsa_pss_rsae_sha384",
        0x0806 => "rsa_pss_rsae_sha512",
        0x0807 => "ed25519",
        0x0808 => "ed448",
        0x0809 => "rsa_pss_pss_sha256",
        0x080a => "rsa_pss_pss_sha384",
        0x080b => "rsa_pss_pss_sha512",
        0x081a => "ecdsa_brainpoolP256r1tls13_sha256",
        0x081b => "ecdsa_brainpoolP384r1tls13_sha384",
        0x081c => "ecdsa_brainpoolP512r1tls13_sha512",
        0x0904 => "mldsa44",
        0x0905 => "mldsa65",
        0x0906 => "mldsa87",
        _ => return None,
    })
}

fn point_format_name(v: u8) -> &'static str {
    match v {
        0 => "uncompressed",
        1 => "ansiX962_compressed_prime",
        2 => "ansiX962_compressed_char2",
        _ => "unknown",
    }
}

/// TLS extension names.
pub fn extension_name(v: u16) -> Option<&'static str> {
    Some(match v {
        0x0000 => "server_name",
        0x0001 => "max_fragment_length",
        0x0002 => "client_certificate_url",
        0x0003 => "trusted_ca_keys",
        0x0004 => "truncated_hmac",
        0x0005 => "status_request",
        0x0006 => "user_mapping",
        0x0007 => "client_authz",
        0x0008 => "server_authz",
        0x0009 => "cert_type",
        0x000a => "supported_groups",
        0x000b => "ec_point_formats",
        0x000c => "srp",
        0x000d => "signature_algorithms",
        0x000e => "use_srtp",
        0x000f => "heartbeat",
        0x0010 => "application_layer_protocol_negotiation",
        0x0011 => "status_request_v2",
        0x0012 => "signed_certificate_timestamp",
        0x0013 => "client_certificate_type",
        0x0014 => "server_certificate_type",
        0x0015 => "padding",
        0x0016 => "encrypt_then_mac",
        0x0017 => "extended_master_secret",
        0x0018 => "token_binding",
        0x0019 => "cached_info",
        0x001b => "compress_certificate",
        0x001c => "record_size_limit",
        0x0022 => "delegated_credential",
        0x0023 => "session_ticket",
        0x0029 => "pre_shared_key",
        0x002a => "early_data",
        0x002b => "supported_versions",
        0x002c => "cookie",
        0x002d => "psk_key_exchange_modes",
        0x002f => "certificate_authorities",
        0x0030 => "oid_filters",
        0x0031 => "post_handshake_auth",
        0x0032 => "signature_algorithms_cert",
        0x0033 => "key_share",
        0x0039 => "quic_transport_parameters",
        0x3374 => "next_protocol_negotiation",
        0x4469 => "application_settings (old)",
        0x44cd => "application_settings",
        0x754f => "channel_id (old)",
        0x7550 => "channel_id",
        0xfe0d => "encrypted_client_hello",
        0xff01 => "renegotiation_info",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_or_raw() {
        assert_eq!(
            from_hex_or_raw(b"16 03\n01\t0a\r\n").unwrap(),
            vec![0x16, 3, 1, 0x0a]
        );
        assert_eq!(from_hex_or_raw(b"ABcd").unwrap(), vec![0xab, 0xcd]);
        assert!(from_hex_or_raw(b"160").is_err());
        // Binary stays binary.
        assert_eq!(
            from_hex_or_raw(&[0x16, 0x03, 0x01]).unwrap(),
            vec![0x16, 3, 1]
        );
        assert_eq!(from_hex_or_raw(b"GET /").unwrap(), b"GET /".to_vec());
    }

    #[test]
    fn bare_message_is_wrapped() {
        let msg = [1u8, 0, 0, 2, 0xaa, 0xbb];
        assert_eq!(
            bare_handshake_message(&msg).unwrap(),
            vec![0x16, 3, 1, 0, 6, 1, 0, 0, 2, 0xaa, 0xbb]
        );
        assert!(bare_handshake_message(&[1, 0, 0, 9, 0]).is_none());
        assert!(bare_handshake_message(&[0x16, 3, 1, 0, 0]).is_none());
    }

    #[test]
    fn server_hello_fields() {
        // TLS 1.3 ServerHello: legacy 0x0303, supported_versions 0x0304.
        let mut msg = vec![2u8, 0, 0, 0, 0x03, 0x03];
        msg.extend_from_slice(&[7; 32]);
        msg.push(0); // session id
        msg.extend_from_slice(&[0x13, 0x01, 0x00]);
        msg.extend_from_slice(&[0, 6, 0x00, 0x2b, 0, 2, 0x03, 0x04]);
        let len = msg.len() - 4;
        msg[3] = u8::try_from(len).unwrap();
        let mut rec = vec![0x16, 3, 3, 0, u8::try_from(msg.len()).unwrap()];
        rec.extend_from_slice(&msg);
        let sh = parse_server_hello(&rec).unwrap();
        assert_eq!((sh.version, sh.suite, sh.retry), (0x0304, 0x1301, false));
        rec[11..43].copy_from_slice(&HRR_RANDOM);
        assert!(parse_server_hello(&rec).unwrap().retry);
        assert!(parse_server_hello(&[0x15, 3, 3, 0, 2, 2, 40]).is_none());
    }

    #[test]
    fn names() {
        assert_eq!(
            suite_name(0xc02b),
            Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(suite_name(0x000a), Some("TLS_RSA_WITH_3DES_EDE_CBC_SHA"));
        assert_eq!(suite_name(0x0004), Some("TLS_RSA_WITH_RC4_128_MD5"));
        assert_eq!(
            suite_name(0x00ff),
            Some("TLS_EMPTY_RENEGOTIATION_INFO_SCSV")
        );
        assert_eq!(
            suite_name(0x0062),
            Some("TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA")
        );
        assert_eq!(suite_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(display_name(0x0a0a, suite_name), "GREASE");
        assert_eq!(display_name(0xabcd, suite_name), "0xabcd");
        assert_eq!(sigalg_name(0x0804), Some("rsa_pss_rsae_sha256"));
        assert_eq!(extension_name(0xff01), Some("renegotiation_info"));
    }
}
