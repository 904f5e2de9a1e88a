//! Reading and parsing the TLS ClientHello before any TLS library sees it.
//!
//! snigate must look at the ClientHello itself — to know whether the client sent SNI,
//! which versions, suites and signature schemes it offers (certificate choice, the
//! handshake log, the compatibility report) — and then hand the very same bytes to
//! rustls. So this module reads raw bytes from the client socket, under one deadline
//! and into a bounded buffer, until one complete ClientHello handshake message has
//! arrived, and keeps every byte it read so that rustls (whose first input they are, see
//! [`crate::tls::server_stream`]), OpenSSL or a backend (through
//! [`crate::io::replay::PrefixedStream`]) reads them as the client sent them.
//!
//! Everything here is hostile input: the parser is a total function over bytes (no
//! panics, no unchecked indexing, no allocation beyond the size of the input it was
//! given), and the reader never buffers more than [`MAX_CLIENT_HELLO`] bytes.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes snigate buffers while waiting for a ClientHello, TLS record headers
/// included.
///
/// Real ClientHellos are 100 bytes (SSLv2-compatible hellos of old Java) to about
/// 2 KB (a browser with a post-quantum X25519MLKEM768 key share and padding); one full
/// TLS record (16 KiB of payload) leaves room for several times that. The bound
/// matters because these bytes are held per connection *before* any authentication:
/// a client that drips a huge "hello" must not make the proxy hold more than this.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// The largest TLSPlaintext fragment any TLS version allows (RFC 8446 §5.1,
/// RFC 5246 §6.2.1). A record header announcing more is not a ClientHello record.
const MAX_RECORD_PAYLOAD: usize = 1 << 14;

/// TLS record content type "handshake".
const CONTENT_HANDSHAKE: u8 = 0x16;
/// Handshake message type "client_hello".
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// SSLv2 message type CLIENT-HELLO.
const SSLV2_CLIENT_HELLO: u8 = 1;

/// Record header: type (1), version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Handshake header: type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;

/// Extension types snigate reads the content of.
const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_EC_POINT_FORMATS: u16 = 11;
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// Protocol version numbers as they appear on the wire.
const VERSION_SSL2: u16 = 0x0002;
const VERSION_SSL3: u16 = 0x0300;
const VERSION_TLS13: u16 = 0x0304;

/// ECDSA signature schemes a rustls server can sign with (ecdsa_secp256r1_sha256,
/// ecdsa_secp384r1_sha384, ecdsa_secp521r1_sha512). In TLS 1.2 these are the same
/// code points as the (hash, signature) pairs sha256/384/512 + ecdsa. SHA-1 and
/// SHA-224 ECDSA (0x0203, 0x0303) are left out on purpose: rustls never signs with
/// them, so a client offering only those cannot be served an ECDSA certificate.
const ECDSA_SCHEMES: [u16; 3] = [0x0403, 0x0503, 0x0603];

/// A ClientHello read from a client: the raw bytes and what they say.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientHello {
    /// Every byte consumed from the socket, in order: the complete ClientHello
    /// records and, if the last read returned more, whatever followed them. All of it
    /// must be given to the TLS library first (see [`crate::tls::server_stream::accept`]).
    pub bytes: Vec<u8>,
    /// The parsed fields.
    pub info: ClientHelloInfo,
}

/// What a ClientHello says, as sent: GREASE values are kept wherever the client put
/// them, so fingerprints (JA3/JA4) can be computed from these fields later.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientHelloInfo {
    /// The host_name from the server_name extension, exactly as sent (not
    /// lower-cased; invalid UTF-8 replaced by U+FFFD). `None` when the extension is
    /// absent or carries no host_name entry.
    pub sni: Option<String>,
    /// The version in the first TLS record header (0x0002 for an SSLv2-format hello,
    /// whose record layer has no version field).
    pub record_version: u16,
    /// legacy_version in the hello body (the version field of an SSLv2-format hello).
    pub client_version: u16,
    /// The supported_versions extension, in order, GREASE included; empty when absent.
    pub supported_versions: Vec<u16>,
    /// Cipher suites in order, GREASE and signalling suites (SCSV) included.
    pub cipher_suites: Vec<u16>,
    /// Extension types in order, GREASE included.
    pub extensions: Vec<u16>,
    /// ALPN protocol names in order (invalid UTF-8 replaced by U+FFFD).
    pub alpn: Vec<String>,
    /// The first and last byte of the first ALPN protocol name, exactly as sent (the
    /// same byte twice for a one-byte name): what JA4 reads, kept here because
    /// [`alpn`](Self::alpn) may have replaced invalid UTF-8. `None` without an ALPN
    /// extension, with an empty list or an empty first name.
    pub alpn_first_ends: Option<[u8; 2]>,
    /// The supported_groups (elliptic_curves) extension, in order, GREASE included.
    pub groups: Vec<u16>,
    /// The ec_point_formats extension.
    pub ec_point_formats: Vec<u8>,
    /// The signature_algorithms extension, in order, GREASE included.
    pub signature_algorithms: Vec<u16>,
    /// The hello came in the SSLv2-compatible format (first byte has the high bit set,
    /// e.g. 0x80): old Java and OpenSSL 0.9.x clients. rustls cannot read it.
    pub sslv2: bool,
}

impl ClientHelloInfo {
    /// The highest version the client offers: the largest non-GREASE entry of
    /// supported_versions, or `client_version` without that extension.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.client_version)
    }

    /// The protocol versions offered, as the log writes them ("1.3", "1.2", "1.1",
    /// "1.0", "3.0").
    ///
    /// With a supported_versions extension: its entries in the client's order, GREASE
    /// and unknown (draft) versions dropped. Without it, a client implicitly offers
    /// every version from `client_version` down to TLS 1.0 (which is what servers of
    /// that era negotiate), e.g. `["1.2", "1.1", "1.0"]`; an SSL 3.0 client gives
    /// `["3.0"]`.
    pub fn offered_versions(&self) -> Vec<&'static str> {
        if !self.supported_versions.is_empty() {
            return self
                .supported_versions
                .iter()
                .filter_map(|v| version_name(*v))
                .collect();
        }
        if self.client_version == VERSION_SSL3 {
            return vec!["3.0"];
        }
        // A client_version above TLS 1.3 (a future or bogus value) is clamped: it
        // still offers everything we know below it.
        [0x0304u16, 0x0303, 0x0302, 0x0301]
            .iter()
            .filter(|v| **v <= self.client_version)
            .filter_map(|v| version_name(*v))
            .collect()
    }

    /// The cipher suites offered, in order, as `"0xc02b"` (lower case, 4 hex digits),
    /// GREASE dropped.
    pub fn offered_suites_hex(&self) -> Vec<String> {
        self.cipher_suites
            .iter()
            .filter(|s| !is_grease(**s))
            .map(|s| format!("{s:#06x}"))
            .collect()
    }

    /// Whether the client could accept an ECDSA certificate from a TLS 1.2+ server
    /// such as rustls: it offers TLS 1.3 and an ECDSA signature scheme, or it offers
    /// an ECDHE_ECDSA cipher suite (TLS 1.2 style) and an ECDSA signature scheme.
    ///
    /// Without a signature_algorithms extension (TLS 1.0/1.1 clients) this is false:
    /// such clients cannot complete a handshake with a TLS 1.2+ server anyway.
    pub fn offers_ecdsa(&self) -> bool {
        let ecdsa_scheme = self
            .signature_algorithms
            .iter()
            .any(|s| ECDSA_SCHEMES.contains(s));
        if !ecdsa_scheme {
            return false;
        }
        let tls13 = self.supported_versions.contains(&VERSION_TLS13);
        tls13 || self.cipher_suites.iter().any(|s| is_ecdhe_ecdsa_suite(*s))
    }

    /// The SNI host name as snigate compares it: lower case (DNS names
    /// compare case-insensitively), without a trailing dot (`a.test.` is
    /// `a.test`). Every use of the SNI as a name goes through here.
    pub fn server_name(&self) -> Option<String> {
        self.sni.as_deref().map(crate::config::host_name)
    }
}

/// Whether `v` is a GREASE value (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// An ECDHE_ECDSA cipher suite (any cipher): one whose server authenticates with an
/// ECDSA certificate. The IANA registry has them scattered over 0xc0xx and 0xcca9,
/// so use tls-parser's table rather than a hand-kept list.
fn is_ecdhe_ecdsa_suite(id: u16) -> bool {
    match tls_parser::TlsCipherSuite::from_id(id) {
        Some(cs) => {
            cs.kx == tls_parser::TlsCipherKx::Ecdhe && cs.au == tls_parser::TlsCipherAu::Ecdsa
        }
        None => false,
    }
}

fn version_name(v: u16) -> Option<&'static str> {
    match v {
        0x0304 => Some("1.3"),
        0x0303 => Some("1.2"),
        0x0302 => Some("1.1"),
        0x0301 => Some("1.0"),
        0x0300 => Some("3.0"),
        _ => None,
    }
}

/// Why no usable ClientHello was read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The deadline passed before a complete ClientHello arrived (slow or silent
    /// client, or a client waiting for the server to speak first).
    #[error("no complete ClientHello within the client_hello timeout ({received} bytes received)")]
    Timeout {
        /// Bytes read before the deadline.
        received: usize,
    },
    /// The client closed the connection (EOF) before a complete ClientHello.
    #[error(
        "client closed the connection before a complete ClientHello ({received} bytes received)"
    )]
    Closed {
        /// Bytes read before EOF.
        received: usize,
    },
    /// The first bytes are not a TLS handshake record (for example plain HTTP sent to
    /// a TLS port).
    #[error("not a TLS ClientHello: first bytes {first_bytes}{}", plain_text_hint(.first_bytes))]
    NotTls {
        /// Up to 16 of the first bytes, as lower-case hex.
        first_bytes: String,
    },
    /// The ClientHello (or what its headers announce) exceeds the buffer limit.
    #[error("ClientHello larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit, [`MAX_CLIENT_HELLO`].
        limit: usize,
    },
    /// A TLS handshake record whose content is not a parseable ClientHello.
    #[error("malformed ClientHello: {0}")]
    Malformed(String),
    /// An SSLv2-compatible ClientHello: parsed and kept (it is worth logging which
    /// client sent it), but rustls cannot serve this format.
    #[error("{}", sslv2_reason(&.hello.info))]
    Sslv2 {
        /// The hello, with `info.sslv2 == true` and the bytes read. Boxed so that
        /// every `Result<_, HelloError>` stays small (the info is ~250 bytes).
        hello: Box<ClientHello>,
    },
    /// Reading from the socket failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why an SSLv2-format hello is not served, in the handshake log's words.
pub fn sslv2_reason(hello: &ClientHelloInfo) -> String {
    format!(
        "SSLv2-compatible ClientHello (highest version offered {}); rustls cannot read this format, the client needs SSLv2Hello disabled or a backend that accepts it",
        version_label(hello.max_version())
    )
}

impl HelloError {
    /// The reason in plain words, for the handshake log.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// Plain text (e.g. "GET / HTTP/1.1") on a TLS port is the most common non-TLS input;
/// say so, it tells the operator the client was pointed at http:// on the TLS port.
fn plain_text_hint(first_bytes_hex: &str) -> &'static str {
    let bytes = hex_decode(first_bytes_hex);
    // A front load balancer sending PROXY protocol to a listener not configured for
    // it looks like garbage too; name the fix.
    if bytes.starts_with(b"PROXY ") || bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
        return " (looks like a PROXY protocol header: set proxy_protocol = true on this listener)";
    }
    let printable = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if printable && method >= 3 && bytes.get(method) == Some(&b' ') {
        " (looks like plain HTTP sent to a TLS port)"
    } else if printable {
        " (looks like plain text, not TLS)"
    } else {
        ""
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .filter_map(|p| {
            let hi = char::from(*p.first()?).to_digit(16)?;
            let lo = char::from(*p.get(1)?).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

fn version_label(v: u16) -> String {
    match v {
        VERSION_SSL2 => "SSL 2.0".to_string(),
        VERSION_SSL3 => "SSL 3.0".to_string(),
        _ => match version_name(v) {
            Some(n) => format!("TLS {n}"),
            None => format!("{v:#06x}"),
        },
    }
}

/// Lower-case hex of up to the first 16 bytes.
fn first_bytes_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(32);
    for b in bytes.iter().take(16) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The result of [`parse_client_hello`] on a buffer that is not (yet) invalid.
// The size difference between the variants is fine: a `Parsed` is returned once per
// parse and consumed at once, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A complete ClientHello, and how many bytes of the input it occupies (whole
    /// records: a record that carries the hello's last byte counts in full).
    Complete(ClientHelloInfo, usize),
    /// The input is a valid beginning of a ClientHello; more bytes are needed.
    Incomplete,
}

/// Parse a ClientHello from the start of `bytes`.
///
/// A total function: any input gives `Ok(Complete)`, `Ok(Incomplete)` or an error
/// (`NotTls`, `TooLarge`, `Malformed`), never a panic. Errors are reported as early
/// as the bytes allow (a first byte of `G` is `NotTls` at once; a header that
/// announces more than [`MAX_CLIENT_HELLO`] is `TooLarge` before its body arrives).
/// An SSLv2-format hello parses to `Complete` with `info.sslv2 == true`;
/// [`read_client_hello`] turns that into [`HelloError::Sslv2`].
pub fn parse_client_hello(bytes: &[u8]) -> Result<Parsed, HelloError> {
    match scan(bytes)? {
        Scan::Complete(info, consumed) => Ok(Parsed::Complete(info, consumed)),
        Scan::Need(_) => Ok(Parsed::Incomplete),
    }
}

/// Read one ClientHello from `stream`, within `timeout` for the whole read.
///
/// The hello may come in any number of TCP segments and TLS records. Reads stop as
/// soon as the hello is complete; `ClientHello::bytes` holds everything read
/// (possibly more than the hello, if the client sent more in the same segment), to be
/// replayed. At most [`MAX_CLIENT_HELLO`] bytes are ever buffered.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<ClientHello, HelloError> {
    let mut buf: Vec<u8> = Vec::new();
    // One deadline for the whole read: a client dripping one byte per second must not
    // get a fresh timeout per read. `read_buf` only grows `buf` by what was actually
    // read, so when the timeout drops the future, `buf.len()` is the true count.
    let result = tokio::time::timeout(timeout, read_loop(stream, &mut buf)).await;
    match result {
        Ok(Ok(info)) => {
            if info.sslv2 {
                Err(HelloError::Sslv2 {
                    hello: Box::new(ClientHello { bytes: buf, info }),
                })
            } else {
                Ok(ClientHello { bytes: buf, info })
            }
        }
        Ok(Err(e)) => Err(e),
        Err(_elapsed) => Err(HelloError::Timeout {
            received: buf.len(),
        }),
    }
}

async fn read_loop<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<ClientHelloInfo, HelloError> {
    // The least total length at which parsing can make progress; re-parsing only once
    // that many bytes are buffered keeps a one-byte-per-segment client from costing
    // a quadratic number of parse steps.
    let mut need = 1usize;
    loop {
        if buf.len() >= need {
            match scan(buf)? {
                Scan::Complete(info, _consumed) => return Ok(info),
                Scan::Need(n) => need = n,
            }
        }
        let room = MAX_CLIENT_HELLO.saturating_sub(buf.len());
        if room == 0 {
            // Unreachable in practice (scan reports TooLarge from the headers first),
            // but the bound must not depend on that.
            return Err(HelloError::TooLarge {
                limit: MAX_CLIENT_HELLO,
            });
        }
        if buf.len() == buf.capacity() {
            // Grow geometrically from 1 KiB but never beyond the limit: most hellos
            // fit the first allocation, and a hostile one costs at most 16 KiB.
            let target = (buf.capacity() * 2).clamp(1024, MAX_CLIENT_HELLO);
            buf.reserve_exact(target.saturating_sub(buf.len()));
        }
        let mut limited = bytes::BufMut::limit(&mut *buf, room);
        let n = stream.read_buf(&mut limited).await?;
        if n == 0 {
            return Err(HelloError::Closed {
                received: buf.len(),
            });
        }
    }
}

/// Internal parse result: complete, or the least total input length at which another
/// attempt can make progress.
enum Scan {
    Complete(ClientHelloInfo, usize),
    Need(usize),
}

fn scan(bytes: &[u8]) -> Result<Scan, HelloError> {
    let Some(&first) = bytes.first() else {
        return Ok(Scan::Need(1));
    };
    if first == CONTENT_HANDSHAKE {
        scan_tls(bytes)
    } else if first & 0x80 != 0 {
        scan_sslv2(bytes)
    } else {
        Err(not_tls(bytes))
    }
}

fn not_tls(bytes: &[u8]) -> HelloError {
    HelloError::NotTls {
        first_bytes: first_bytes_hex(bytes),
    }
}

fn malformed(msg: impl Into<String>) -> HelloError {
    HelloError::Malformed(msg.into())
}

fn too_large() -> HelloError {
    HelloError::TooLarge {
        limit: MAX_CLIENT_HELLO,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let hi = *b.get(at)?;
    let lo = *b.get(at.checked_add(1)?)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Walk the TLS records at the start of `bytes`, collecting the handshake stream
/// until the first handshake message (which must be a ClientHello) is complete.
///
/// Two passes: the first only reads headers (cheap, no copying), so that the many
/// attempts on a partial buffer cost little; the second, once the message is known to
/// be complete, reassembles it across records and parses it.
fn scan_tls(bytes: &[u8]) -> Result<Scan, HelloError> {
    let mut offset = 0usize;
    let mut records = 0usize;
    // The first 4 bytes of the handshake stream (the handshake header), gathered
    // across records: a client may legally split even the header.
    let mut hs_header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut hs_have = 0usize; // handshake bytes seen so far (across records)
    let mut record_version = 0u16;
    loop {
        // Record header.
        let Some(header) = bytes.get(offset..offset + RECORD_HEADER_LEN) else {
            // Check what we have of the header before asking for more, so that
            // garbage is rejected without waiting.
            let partial = bytes.get(offset..).unwrap_or(&[]);
            check_partial_record_header(partial, records, bytes)?;
            // Content type and version major are judged as each arrives, so
            // look again at the next byte until both are in (the reader only
            // scans again once it has what `Need` asks for).
            let need = if partial.len() < 2 {
                bytes.len() + 1
            } else {
                offset + RECORD_HEADER_LEN
            };
            return Ok(Scan::Need(need));
        };
        let (ctype, major, minor) = (header[0], header[1], header[2]);
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        check_record_type(ctype, major, records, bytes)?;
        if records == 0 {
            record_version = u16::from_be_bytes([major, minor]);
        }
        if len == 0 {
            // RFC 5246 §6.2.1 / RFC 8446 §5.1: no zero-length handshake fragments.
            return Err(malformed("zero-length handshake record"));
        }
        if len > MAX_RECORD_PAYLOAD {
            return Err(malformed(format!(
                "record length {len} exceeds the TLS maximum of {MAX_RECORD_PAYLOAD}"
            )));
        }
        let body_start = offset + RECORD_HEADER_LEN;
        let record_end = body_start + len;
        if record_end > MAX_CLIENT_HELLO {
            return Err(too_large());
        }
        records += 1;
        let available = bytes.get(body_start..).unwrap_or(&[]);
        let body = available.get(..len).unwrap_or(available);

        // Feed the handshake header from this record's (possibly partial) body.
        for &b in body {
            if hs_have >= HANDSHAKE_HEADER_LEN {
                break;
            }
            hs_header[hs_have] = b;
            hs_have += 1;
        }
        if hs_have >= 1 && hs_header[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(malformed(format!(
                "first handshake message has type {}, not ClientHello (1)",
                hs_header[0]
            )));
        }
        // Handshake-stream bytes carried by the records so far, this one included
        // (whether or not its body has fully arrived): the wire length minus one
        // record header per record.
        let hs_through_record = record_end.saturating_sub(records * RECORD_HEADER_LEN);
        if hs_have >= HANDSHAKE_HEADER_LEN {
            let msg_len = (usize::from(hs_header[1]) << 16)
                | (usize::from(hs_header[2]) << 8)
                | usize::from(hs_header[3]);
            let msg_total = HANDSHAKE_HEADER_LEN + msg_len;
            // Least bytes on the wire: the message plus one record header per record
            // used so far (more if it needs further records).
            if msg_total + records * RECORD_HEADER_LEN > MAX_CLIENT_HELLO {
                return Err(too_large());
            }
            if hs_through_record >= msg_total {
                if body.len() < len {
                    // The message ends in this record, which has not fully arrived.
                    return Ok(Scan::Need(record_end));
                }
                let info = parse_tls_hello(bytes, record_end, msg_total, record_version)?;
                return Ok(Scan::Complete(info, record_end));
            }
        }
        if body.len() < len {
            // Until the handshake header is known, look again at every new byte so
            // that a wrong type or an oversized length is rejected at once rather
            // than after the rest of this record has arrived.
            let need = if hs_have < HANDSHAKE_HEADER_LEN {
                bytes.len() + 1
            } else {
                record_end
            };
            return Ok(Scan::Need(need));
        }
        offset = record_end;
    }
}

/// Validate the bytes of a record header that has only partly arrived.
fn check_partial_record_header(
    partial: &[u8],
    records: usize,
    whole: &[u8],
) -> Result<(), HelloError> {
    if let Some(&ctype) = partial.first() {
        match partial.get(1) {
            Some(&major) => check_record_type(ctype, major, records, whole)?,
            None if ctype != CONTENT_HANDSHAKE => {
                check_record_type(ctype, 0x03, records, whole)?;
            }
            None => {}
        }
    }
    Ok(())
}

fn check_record_type(ctype: u8, major: u8, records: usize, whole: &[u8]) -> Result<(), HelloError> {
    if ctype == CONTENT_HANDSHAKE && major == 0x03 {
        return Ok(());
    }
    if records == 0 {
        // The very first record: whatever this is, it is not TLS.
        return Err(not_tls(whole));
    }
    if ctype != CONTENT_HANDSHAKE {
        Err(malformed(format!(
            "record of content type {ctype} inside the ClientHello"
        )))
    } else {
        Err(malformed(format!(
            "record with version major {major:#04x} inside the ClientHello"
        )))
    }
}

/// Reassemble the handshake message (`msg_total` bytes, header included) from the
/// records in `bytes[..records_end]` and parse it.
fn parse_tls_hello(
    bytes: &[u8],
    records_end: usize,
    msg_total: usize,
    record_version: u16,
) -> Result<ClientHelloInfo, HelloError> {
    // Most hellos come in one record: parse them where they lie.
    let first = be16(bytes, 3).map(usize::from).unwrap_or(0);
    if msg_total <= first {
        let body = bytes
            .get(RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN..RECORD_HEADER_LEN + msg_total)
            .ok_or_else(|| malformed("truncated handshake message"))?;
        let mut info = parse_hello_body(body)?;
        info.record_version = record_version;
        return Ok(info);
    }
    let mut msg: Vec<u8> = Vec::with_capacity(msg_total);
    let mut offset = 0usize;
    while offset < records_end && msg.len() < msg_total {
        let len = usize::from(be16(bytes, offset + 3).ok_or_else(|| malformed("truncated"))?);
        let body = bytes
            .get(offset + RECORD_HEADER_LEN..offset + RECORD_HEADER_LEN + len)
            .ok_or_else(|| malformed("truncated record"))?;
        let want = msg_total - msg.len();
        msg.extend_from_slice(body.get(..want).unwrap_or(body));
        offset += RECORD_HEADER_LEN + len;
    }
    let body = msg
        .get(HANDSHAKE_HEADER_LEN..msg_total)
        .ok_or_else(|| malformed("truncated handshake message"))?;
    let mut info = parse_hello_body(body)?;
    info.record_version = record_version;
    Ok(info)
}

/// Room for this many extension types before a hello's list grows.
const TYPICAL_EXTENSIONS: usize = 20;

/// Parse a ClientHello body (after the 4-byte handshake header).
fn parse_hello_body(body: &[u8]) -> Result<ClientHelloInfo, HelloError> {
    let (rest, ch) = tls_parser::parse_tls_handshake_client_hello(body)
        .map_err(|e| malformed(format!("ClientHello body: {}", nom_reason(&e))))?;
    // tls-parser treats an extensions block whose length overruns the message as
    // "no extensions" and stops; anything left over means the lengths disagree, which
    // rustls would reject too, so say so now instead of logging a partial picture.
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the ClientHello fields do not form a valid extensions block",
            rest.len()
        )));
    }
    let mut info = ClientHelloInfo {
        client_version: ch.version.0,
        cipher_suites: ch.ciphers.iter().map(|c| c.0).collect(),
        // Browsers send 12 to 18 extensions: room for them up front saves
        // the list three reallocations (about 1k instructions a hello).
        extensions: Vec::with_capacity(TYPICAL_EXTENSIONS),
        ..ClientHelloInfo::default()
    };
    if let Some(ext) = ch.ext {
        parse_extensions(ext, &mut info)?;
    }
    Ok(info)
}

/// Walk the extensions block. The (type, length) framing is walked here rather than
/// by tls-parser's `parse_tls_client_hello_extensions`, because that one stops
/// silently at the first extension whose content it cannot parse (losing the types of
/// all that follow) and parses content snigate has no use for. Content is parsed,
/// with tls-parser, only for the extensions recorded in [`ClientHelloInfo`].
fn parse_extensions(mut ext: &[u8], info: &mut ClientHelloInfo) -> Result<(), HelloError> {
    while !ext.is_empty() {
        let (Some(ty), Some(len)) = (be16(ext, 0), be16(ext, 2)) else {
            return Err(malformed("truncated extension header"));
        };
        let end = 4 + usize::from(len);
        let Some(data) = ext.get(4..end) else {
            return Err(malformed(format!(
                "extension {ty} announces {len} bytes, more than the extensions block holds"
            )));
        };
        info.extensions.push(ty);
        parse_extension(ty, data, info)?;
        ext = ext.get(end..).unwrap_or(&[]);
    }
    Ok(())
}

fn parse_extension(ty: u16, data: &[u8], info: &mut ClientHelloInfo) -> Result<(), HelloError> {
    use tls_parser::TlsExtension as E;
    let parsed = match ty {
        EXT_SERVER_NAME => tls_parser::parse_tls_extension_sni_content(data),
        EXT_SUPPORTED_GROUPS => tls_parser::parse_tls_extension_elliptic_curves_content(data),
        EXT_EC_POINT_FORMATS => tls_parser::parse_tls_extension_ec_point_formats_content(data),
        EXT_SIGNATURE_ALGORITHMS => {
            tls_parser::parse_tls_extension_signature_algorithms_content(data)
        }
        EXT_ALPN => tls_parser::parse_tls_extension_alpn_content(data),
        EXT_SUPPORTED_VERSIONS => {
            // tls-parser's content parser for this one is private and its public
            // wrapper reads a 2-byte body as the ServerHello form, so parse the
            // ClientHello form (1-byte length, then u16 versions) directly.
            info.supported_versions = parse_supported_versions(data)?;
            return Ok(());
        }
        _ => return Ok(()),
    };
    let name = extension_name(ty);
    let (rest, parsed) =
        parsed.map_err(|e| malformed(format!("{name} extension: {}", nom_reason(&e))))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{name} extension has {} trailing bytes",
            rest.len()
        )));
    }
    match parsed {
        E::SNI(names) => {
            // name_type 0 is host_name, the only type ever defined.
            info.sni = names
                .iter()
                .find(|(t, _)| t.0 == 0)
                .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
        }
        E::EllipticCurves(groups) => info.groups = groups.iter().map(|g| g.0).collect(),
        E::EcPointFormats(f) => info.ec_point_formats = f.to_vec(),
        E::SignatureAlgorithms(s) => info.signature_algorithms = s,
        E::ALPN(protos) => {
            info.alpn_first_ends = protos.first().and_then(|p| Some([*p.first()?, *p.last()?]));
            info.alpn = protos
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
        }
        _ => {}
    }
    Ok(())
}

fn parse_supported_versions(data: &[u8]) -> Result<Vec<u16>, HelloError> {
    let (Some(&list_len), Some(list)) = (data.first(), data.get(1..)) else {
        return Err(malformed("supported_versions extension is empty"));
    };
    if usize::from(list_len) != list.len() || list.len() % 2 != 0 {
        return Err(malformed(format!(
            "supported_versions extension: list length {list_len} does not match its {} bytes",
            list.len()
        )));
    }
    Ok(list
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

fn extension_name(ty: u16) -> &'static str {
    match ty {
        EXT_SERVER_NAME => "server_name",
        EXT_SUPPORTED_GROUPS => "supported_groups",
        EXT_EC_POINT_FORMATS => "ec_point_formats",
        EXT_SIGNATURE_ALGORITHMS => "signature_algorithms",
        EXT_ALPN => "application_layer_protocol_negotiation",
        EXT_SUPPORTED_VERSIONS => "supported_versions",
        _ => "unknown",
    }
}

/// A nom error in plain words. The input is always the complete message, so
/// "incomplete" means a length field points past the end.
fn nom_reason<E: std::fmt::Debug>(e: &tls_parser::nom::Err<E>) -> &'static str {
    match e {
        tls_parser::nom::Err::Incomplete(_) => "a length field points past the end",
        tls_parser::nom::Err::Error(_) | tls_parser::nom::Err::Failure(_) => {
            "invalid field value or length"
        }
    }
}

/// The SSLv2-compatible ClientHello (RFC 6101 appendix E.2, RFC 5246 appendix E.2):
/// a 2-byte record header (high bit set, 15-bit length), then msg_type 1, version,
/// cipher_spec_length, session_id_length, challenge_length, cipher specs (3 bytes
/// each), session id, challenge.
///
/// Parsed by hand because tls-parser 0.12 has no parser for this format (it only
/// knows TLS records, whose first byte is a content type). The format is tiny and
/// fixed, and old clients (Java 6, OpenSSL 0.9.x) still send it; rustls rejects it,
/// so snigate parses it only to log who sent it.
fn scan_sslv2(bytes: &[u8]) -> Result<Scan, HelloError> {
    // Judge nothing before the message type is in: a high first byte alone is as
    // likely binary garbage as an SSLv2 header.
    let (Some(&b0), Some(&b1), Some(&msg_type)) = (bytes.first(), bytes.get(1), bytes.get(2))
    else {
        return Ok(Scan::Need(3));
    };
    if msg_type != SSLV2_CLIENT_HELLO {
        return Err(not_tls(bytes));
    }
    let len = (usize::from(b0 & 0x7f) << 8) | usize::from(b1);
    let total = 2 + len;
    // Fixed part: msg_type (1) + version (2) + three lengths (2 each).
    if len < 9 {
        return Err(malformed(format!(
            "SSLv2-format ClientHello of {len} bytes is shorter than its fixed fields"
        )));
    }
    if total > MAX_CLIENT_HELLO {
        return Err(too_large());
    }
    let Some(body) = bytes.get(2..total) else {
        return Ok(Scan::Need(total));
    };
    let field = |at: usize| be16(body, at).map(usize::from).unwrap_or(0);
    let version = be16(body, 1).unwrap_or(0);
    let (spec_len, sid_len, challenge_len) = (field(3), field(5), field(7));
    if spec_len % 3 != 0 {
        return Err(malformed(format!(
            "SSLv2-format ClientHello: cipher_spec_length {spec_len} is not a multiple of 3"
        )));
    }
    // Trailing bytes after the challenge are tolerated (nothing reads them); fields
    // that overrun the message are not.
    let specs = body
        .get(9..9 + spec_len)
        .filter(|_| 9 + spec_len + sid_len + challenge_len <= len)
        .ok_or_else(|| {
            malformed("SSLv2-format ClientHello: field lengths exceed the message length")
        })?;
    let info = ClientHelloInfo {
        record_version: VERSION_SSL2,
        client_version: version,
        // A 3-byte cipher spec whose first byte is 0 is a TLS cipher suite; the others
        // are SSL 2.0 ciphers with no TLS equivalent.
        cipher_suites: specs
            .chunks_exact(3)
            .filter(|s| s[0] == 0)
            .map(|s| u16::from_be_bytes([s[1], s[2]]))
            .collect(),
        sslv2: true,
        ..ClientHelloInfo::default()
    };
    Ok(Scan::Complete(info, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal TLS 1.2 ClientHello body with the given extensions block contents.
    fn hello_body(suites: &[u16], ext: &[u8]) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[7u8; 32]);
        b.push(0); // session id
        b.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
        for s in suites {
            b.extend_from_slice(&s.to_be_bytes());
        }
        b.extend_from_slice(&[1, 0]); // compression: null
        b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        b.extend_from_slice(ext);
        b
    }

    fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        e.extend_from_slice(data);
        e
    }

    fn sni_ext(name: &str) -> Vec<u8> {
        let n = name.as_bytes();
        let mut d = u16::try_from(n.len() + 3).unwrap().to_be_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&u16::try_from(n.len()).unwrap().to_be_bytes());
        d.extend_from_slice(n);
        ext(0, &d)
    }

    /// Wrap a handshake body into one handshake message in one record.
    fn record(body: &[u8]) -> Vec<u8> {
        let mut msg = vec![1u8];
        msg.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        msg.extend_from_slice(body);
        let mut r = vec![0x16, 0x03, 0x01];
        r.extend_from_slice(&u16::try_from(msg.len()).unwrap().to_be_bytes());
        r.extend_from_slice(&msg);
        r
    }

    fn complete(bytes: &[u8]) -> (ClientHelloInfo, usize) {
        match parse_client_hello(bytes) {
            Ok(Parsed::Complete(i, n)) => (i, n),
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    #[test]
    fn grease() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x0303));
        assert!(!is_grease(0xc02b));
    }

    #[test]
    fn parses_tls13_style_hello() {
        let mut e = Vec::new();
        e.extend(ext(0x1a1a, &[]));
        e.extend(sni_ext("Portal.Contoso.test"));
        e.extend(ext(43, &[6, 0x2a, 0x2a, 0x03, 0x04, 0x03, 0x03]));
        e.extend(ext(13, &[0, 4, 0x04, 0x03, 0x08, 0x04]));
        e.extend(ext(10, &[0, 4, 0x3a, 0x3a, 0x00, 0x1d]));
        e.extend(ext(
            16,
            &[
                0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
            ],
        ));
        let bytes = record(&hello_body(&[0x2a2a, 0x1301, 0xc02b], &e));
        let (info, n) = complete(&bytes);
        assert_eq!(n, bytes.len());
        assert_eq!(info.sni.as_deref(), Some("Portal.Contoso.test"));
        assert_eq!(info.server_name().as_deref(), Some("portal.contoso.test"));
        assert_eq!(info.record_version, 0x0301);
        assert_eq!(info.client_version, 0x0303);
        assert_eq!(info.supported_versions, vec![0x2a2a, 0x0304, 0x0303]);
        assert_eq!(info.max_version(), 0x0304);
        assert_eq!(info.offered_versions(), vec!["1.3", "1.2"]);
        assert_eq!(info.cipher_suites, vec![0x2a2a, 0x1301, 0xc02b]);
        assert_eq!(info.offered_suites_hex(), vec!["0x1301", "0xc02b"]);
        assert_eq!(info.extensions, vec![0x1a1a, 0, 43, 13, 10, 16]);
        assert_eq!(info.alpn, vec!["h2", "http/1.1"]);
        assert_eq!(info.alpn_first_ends, Some(*b"h2"));
        assert_eq!(info.groups, vec![0x3a3a, 0x001d]);
        assert_eq!(info.signature_algorithms, vec![0x0403, 0x0804]);
        assert!(info.offers_ecdsa());
        assert!(!info.sslv2);
    }

    #[test]
    fn versions_without_extension() {
        let mut i = ClientHelloInfo {
            client_version: 0x0303,
            ..Default::default()
        };
        assert_eq!(i.offered_versions(), vec!["1.2", "1.1", "1.0"]);
        assert_eq!(i.max_version(), 0x0303);
        i.client_version = 0x0300;
        assert_eq!(i.offered_versions(), vec!["3.0"]);
        i.client_version = 0x0301;
        assert_eq!(i.offered_versions(), vec!["1.0"]);
        i.client_version = 0x0002;
        assert!(i.offered_versions().is_empty());
        i.supported_versions = vec![0xfafa];
        i.client_version = 0x0303;
        assert_eq!(i.max_version(), 0x0303);
    }

    #[test]
    fn ecdsa_needs_scheme_and_suite() {
        let mut i = ClientHelloInfo {
            client_version: 0x0303,
            cipher_suites: vec![0xc02f, 0x009c],
            signature_algorithms: vec![0x0401, 0x0403],
            ..Default::default()
        };
        assert!(!i.offers_ecdsa(), "RSA suites only");
        i.cipher_suites.push(0xc009);
        assert!(i.offers_ecdsa());
        i.signature_algorithms = vec![0x0401, 0x0203];
        assert!(!i.offers_ecdsa(), "ecdsa_sha1 only");
        i.signature_algorithms = vec![0x0503];
        i.cipher_suites = vec![0x1301];
        assert!(!i.offers_ecdsa(), "no TLS 1.3 offered");
        i.supported_versions = vec![0x0304];
        assert!(i.offers_ecdsa());
    }

    #[test]
    fn rejects_early() {
        assert!(matches!(
            parse_client_hello(b"G"),
            Err(HelloError::NotTls { .. })
        ));
        assert!(matches!(
            parse_client_hello(&[0x16]),
            Ok(Parsed::Incomplete)
        ));
        assert!(matches!(
            parse_client_hello(&[0x16, 0x02]),
            Err(HelloError::NotTls { .. })
        ));
        // 60 KiB record: not a TLS plaintext record.
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0xf0, 0x00]),
            Err(HelloError::Malformed(_))
        ));
        // Handshake header announcing 60 KiB.
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xf0, 0x00]),
            Err(HelloError::TooLarge { .. })
        ));
        // Not a ClientHello handshake message.
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x10, 0x02]),
            Err(HelloError::Malformed(_))
        ));
        // Empty input.
        assert!(matches!(parse_client_hello(&[]), Ok(Parsed::Incomplete)));
    }

    #[test]
    fn not_tls_reason_mentions_http() {
        let e = parse_client_hello(b"GET / HTTP/1.1\r\n").unwrap_err();
        let r = e.reason();
        assert!(r.contains("474554202f20485454502f312e310d0a"), "{r}");
        assert!(r.contains("plain HTTP"), "{r}");
    }

    #[test]
    fn proxy_header_hint() {
        let e = parse_client_hello(b"PROXY TCP4 10.0.0.1 10.0.0.2 5000 443\r\n").unwrap_err();
        assert!(e.reason().contains("proxy_protocol"), "{}", e.reason());
        let e = parse_client_hello(b"\r\n\r\n\0\r\nQUIT\n\x21\x11").unwrap_err();
        assert!(e.reason().contains("proxy_protocol"), "{}", e.reason());
        let e = parse_client_hello(&[0x01, 0x02, 0xfe]).unwrap_err();
        assert_eq!(e.reason(), "not a TLS ClientHello: first bytes 0102fe");
    }

    #[test]
    fn header_in_partial_record_is_checked_at_once() {
        // A 1000-byte record of which only the handshake header has arrived.
        let mut b = vec![0x16, 0x03, 0x01, 0x03, 0xe8, 0x01, 0x00];
        assert!(matches!(scan(&b), Ok(Scan::Need(8))));
        b.extend_from_slice(&[0xf0, 0x00]);
        assert!(matches!(scan(&b), Err(HelloError::TooLarge { .. })));
        b[8] = 0x10;
        b[7] = 0x00;
        assert!(matches!(scan(&b), Ok(Scan::Need(1005))));
    }

    #[test]
    fn next_record_header_is_checked_at_once() {
        // A 1-byte first record holding the first byte of the handshake
        // header; the next record's type and version are judged byte by byte.
        let mut b = vec![0x16, 0x03, 0x01, 0x00, 0x01, 0x01];
        assert!(matches!(scan(&b), Ok(Scan::Need(7))));
        b.push(0x16);
        assert!(matches!(scan(&b), Ok(Scan::Need(8))));
        b.push(0x03);
        assert!(matches!(scan(&b), Ok(Scan::Need(11))));
        b[6] = 0x00;
        assert!(matches!(scan(&b[..7]), Err(HelloError::Malformed(_))));
        b[6] = 0x16;
        b[7] = 0x02;
        assert!(matches!(scan(&b), Err(HelloError::Malformed(_))));
    }

    #[test]
    fn trailing_garbage_in_hello_is_malformed() {
        let mut body = hello_body(&[0x002f], &ext(23, &[]));
        body.push(0);
        let bytes = record(&body);
        assert!(matches!(
            parse_client_hello(&bytes),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn sslv2_minimal() {
        // len 9+3+0+16 = 28
        let mut b = vec![0x80, 28, 1, 0x03, 0x01, 0, 3, 0, 0, 0, 16, 0x00, 0x00, 0x2f];
        b.extend_from_slice(&[0xaa; 16]);
        let (info, n) = complete(&b);
        assert_eq!(n, 30);
        assert!(info.sslv2);
        assert_eq!(info.cipher_suites, vec![0x002f]);
        assert_eq!(info.client_version, 0x0301);
        // Overrunning field lengths.
        b[10] = 40;
        assert!(matches!(
            parse_client_hello(&b),
            Err(HelloError::Malformed(_))
        ));
    }
}
