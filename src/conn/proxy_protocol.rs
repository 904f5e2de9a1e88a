//! PROXY protocol in: the header a front load balancer (HAProxy, an AWS NLB,
//! F5, nginx `proxy_protocol on`) writes before the client's bytes, naming
//! the client it accepted the connection from.
//!
//! On a listener with `proxy_protocol = true` every connection must begin
//! with a v1 (text) or v2 (binary) header, read under `[timeouts]
//! proxy_header`, before anything else (the ClientHello, or HTTP in http
//! mode). The addresses it names replace the socket's: the client's becomes
//! the connection's `peer` (the handshake and access logs, the report,
//! X-Forwarded-For, ip-hash) and the destination its `local`. A connection
//! without a valid header is closed and logged as `rejected`, like HAProxy's
//! `accept-proxy` and nginx's `proxy_protocol`: the header is required, never
//! guessed at.
//!
//! Exactly the header's bytes are taken off the socket, so the reader after
//! it (the ClientHello reader, hyper) gets the stream as the client sent it.
//! Parsing the header is the `ppp` crate's; finding where it ends is ours.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::conn::ConnInfo;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::millis;
use crate::state::State;

/// The v2 header's signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// How a v1 header begins.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's figure).
pub const V1_MAX: usize = 107;
/// The shortest header of either version ("PROXY UNKNOWN\r\n"): this many
/// bytes can be read before knowing which version it is without reading past
/// the header.
const SHORTEST: usize = 15;
/// The fixed part of a v2 header: signature, version/command, family and
/// protocol, length.
const V2_FIXED: usize = 16;
/// The most v2 address and TLV bytes accepted. The format allows 64 KiB;
/// balancers send at most a few hundred (addresses, ALPN, authority, TLS
/// facts, an AWS VPC endpoint id), and a larger claim is refused rather than
/// buffered.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// What a valid header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// The client's connection to the balancer: `source` is the client.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 LOCAL (the balancer's own health check), v1 UNKNOWN, or an address
    /// family without IP addresses (AF_UNIX, unspecified): the socket's own
    /// addresses stand.
    Local,
}

/// Why a connection did not begin with a usable PROXY header.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("none arrived within {} ({got} bytes received)", humantime::format_duration(*.limit))]
    Timeout { limit: Duration, got: usize },
    #[error("the client closed the connection after {got} bytes")]
    Closed { got: usize },
    #[error("the connection began with bytes that are not one: {hex}{hint}")]
    NotProxy { hex: String, hint: &'static str },
    #[error("malformed PROXY v1 header \"{text}\" ({problem})")]
    V1 { text: String, problem: String },
    #[error("the PROXY v1 header has no CRLF within {V1_MAX} bytes")]
    V1TooLong,
    #[error("malformed PROXY v2 header ({0})")]
    V2(String),
    #[error(
        "the PROXY v2 header announces {len} bytes of addresses and TLVs, more than the {V2_MAX_PAYLOAD} accepted"
    )]
    V2TooLarge { len: usize },
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

impl ProxyHeaderError {
    /// The reason in plain words, for the handshake log.
    pub fn reason(&self) -> String {
        format!("expected a PROXY protocol header (listener has proxy_protocol = true): {self}")
    }
}

/// Reads one PROXY header (v1 or v2) off `stream` within `limit`, taking
/// exactly its bytes.
pub async fn read_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<Addresses, ProxyHeaderError> {
    let mut buf = Vec::with_capacity(V1_MAX);
    match tokio::time::timeout(limit, read_raw(stream, &mut buf)).await {
        Err(_) => Err(ProxyHeaderError::Timeout {
            limit,
            got: buf.len(),
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => parse(&buf),
    }
}

/// Whether `buf` can still become the start of a header.
fn could_be_header(buf: &[u8]) -> bool {
    let v1 = buf.len().min(V1_PREFIX.len());
    let v2 = buf.len().min(V2_SIGNATURE.len());
    buf[..v1] == V1_PREFIX[..v1] || buf[..v2] == V2_SIGNATURE[..v2]
}

/// Appends the header's bytes to `buf`, and no more.
async fn read_raw(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), ProxyHeaderError> {
    let mut chunk = [0u8; V1_MAX];
    // The first bytes as they come, refused as soon as they cannot begin a
    // header (a ClientHello's 0x16 needs one byte to tell).
    while buf.len() < SHORTEST {
        let n = stream.read(&mut chunk[..SHORTEST - buf.len()]).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed { got: buf.len() });
        }
        buf.extend_from_slice(&chunk[..n]);
        if !could_be_header(buf) {
            return Err(not_proxy(buf));
        }
    }
    if buf.starts_with(V2_SIGNATURE) {
        // v2: the fixed 16 bytes, then as many as their length says.
        fill(stream, buf, V2_FIXED).await?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyHeaderError::V2TooLarge { len });
        }
        return fill(stream, buf, V2_FIXED + len).await;
    }
    // v1: up to the LF. Peek, then take what the peek showed up to and
    // including the LF: one read for a header that arrived whole, and never a
    // byte of what follows it. (Peeking again without taking would return at
    // once with the same bytes; taking first makes the next peek wait.)
    loop {
        if let Some(lf) = buf.iter().position(|&b| b == b'\n') {
            if lf + 1 != buf.len() {
                return Err(ProxyHeaderError::V1 {
                    text: clip_text(buf),
                    problem: "the line ends before the shortest header could".into(),
                });
            }
            return Ok(());
        }
        if buf.len() >= V1_MAX {
            return Err(ProxyHeaderError::V1TooLong);
        }
        let want = V1_MAX - buf.len();
        let n = stream.peek(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed { got: buf.len() });
        }
        let take = chunk[..n]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(n, |i| i + 1);
        // The peeked bytes are in the socket's buffer: this returns at once.
        stream.read_exact(&mut chunk[..take]).await?;
        buf.extend_from_slice(&chunk[..take]);
    }
}

/// Reads until `buf` holds `len` bytes (so that a timeout can tell how many
/// arrived); an early end of stream is [`ProxyHeaderError::Closed`].
async fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<(), ProxyHeaderError> {
    let mut chunk = [0u8; 512];
    while buf.len() < len {
        let want = (len - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed { got: buf.len() });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn not_proxy(buf: &[u8]) -> ProxyHeaderError {
    let hex = buf.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let hint = match buf.first() {
        Some(0x16) => {
            " (a TLS ClientHello: the client connected directly, not through the balancer)"
        }
        Some(b'A'..=b'Z')
            if buf
                .iter()
                .all(|b| b.is_ascii_graphic() || matches!(*b, b' ' | b'\r' | b'\n')) =>
        {
            " (plain text, perhaps HTTP: the client connected directly, not through the balancer)"
        }
        _ => "",
    };
    ProxyHeaderError::NotProxy { hex, hint }
}

/// A v1 header as printable text for the log.
fn clip_text(buf: &[u8]) -> String {
    buf.escape_ascii().to_string()
}

/// Lower-cased first letter and no final period: ppp's messages inside ours.
fn sentence_part(msg: impl std::fmt::Display) -> String {
    let msg = msg.to_string();
    let msg = msg.trim_end_matches('.');
    let mut chars = msg.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Parses a complete header (exactly its bytes).
pub fn parse(buf: &[u8]) -> Result<Addresses, ProxyHeaderError> {
    let pair = |sa: IpAddr, sp: u16, da: IpAddr, dp: u16| Addresses::Proxied {
        source: SocketAddr::new(sa.to_canonical(), sp),
        destination: SocketAddr::new(da.to_canonical(), dp),
    };
    if buf.starts_with(V2_SIGNATURE) {
        use ppp::v2;
        let header =
            v2::Header::try_from(buf).map_err(|e| ProxyHeaderError::V2(sentence_part(e)))?;
        if header.command == v2::Command::Local {
            return Ok(Addresses::Local);
        }
        return Ok(match header.addresses {
            v2::Addresses::IPv4(a) => pair(
                a.source_address.into(),
                a.source_port,
                a.destination_address.into(),
                a.destination_port,
            ),
            v2::Addresses::IPv6(a) => pair(
                a.source_address.into(),
                a.source_port,
                a.destination_address.into(),
                a.destination_port,
            ),
            v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Addresses::Local,
        });
    }
    use ppp::v1;
    let header = v1::Header::try_from(buf).map_err(|e| ProxyHeaderError::V1 {
        text: clip_text(buf),
        problem: sentence_part(e),
    })?;
    Ok(match header.addresses {
        v1::Addresses::Tcp4(a) => pair(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        ),
        v1::Addresses::Tcp6(a) => pair(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        ),
        v1::Addresses::Unknown => Addresses::Local,
    })
}

/// On a `proxy_protocol` listener: checks that the socket's peer may send a
/// header, reads it, and puts the client and destination it names into
/// `info` (`peer`, `local`). `false` when the connection must be
/// closed; it has been logged then (a `rejected` handshake line).
pub(crate) async fn accept(state: &State, info: &mut ConnInfo, stream: &mut TcpStream) -> bool {
    let start = Instant::now();
    let settings = &state.listener(info.listener).settings;
    let result = if settings
        .trusted_proxies
        .may_send_proxy_header(info.peer.ip())
    {
        read_header(stream, state.settings.timeouts.proxy_header)
            .await
            .map_err(|e| e.reason())
    } else {
        Err(format!(
            "connection from {}, which is not in this listener's trusted_proxies: only they may send the PROXY protocol header it requires",
            info.peer.ip()
        ))
    };
    match result {
        Ok(Addresses::Local) => true,
        Ok(Addresses::Proxied {
            source,
            destination,
        }) => {
            info.peer = source;
            info.local = destination;
            true
        }
        Err(reason) => {
            warn_rate_limited(&settings.name, info.peer, &reason);
            let metrics = &state.listener(info.listener).metrics;
            metrics.failure(crate::observe::metrics::FailureReason::ProxyHeader);
            let mut rec = crate::conn::record(state, info, None);
            rec.outcome = HandshakeOutcome::Rejected;
            rec.reason = Some(reason);
            rec.ms = millis(start.elapsed());
            crate::conn::emit(state, info, &rec);
            false
        }
    }
}

/// PROXY protocol out: the header snigate writes to an upstream with
/// `send_proxy_protocol` before the raw TLS stream of a passthrough or
/// legacy_upstream connection, naming `client` as the source and `local`
/// (the address the client connected to) as the destination. Built by `ppp`.
///
/// Both addresses are given in one family, as HAProxy does: IPv4-mapped IPv6
/// addresses are written as IPv4, and when one address is IPv4 and the other
/// IPv6 the IPv4 one is written IPv4-mapped.
pub fn header(
    version: crate::config::ProxyProtocolVersion,
    client: SocketAddr,
    local: SocketAddr,
) -> Vec<u8> {
    use crate::config::ProxyProtocolVersion;
    let (client, local) = one_family(client, local);
    match version {
        ProxyProtocolVersion::V1 => ppp::v1::Addresses::from((client, local))
            .to_string()
            .into_bytes(),
        ProxyProtocolVersion::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (client, local),
        )
        .build()
        // Only a payload over 64 KiB fails to build; two addresses are
        // 12 or 36 bytes. Were it to fail, a LOCAL header (the socket's own
        // addresses stand) still keeps the stream readable for the backend.
        .unwrap_or_else(|_| {
            let mut local = V2_SIGNATURE.to_vec();
            local.extend([0x20, 0x00, 0x00, 0x00]);
            local
        }),
    }
}

/// `a` and `b` in one address family (see [`header`]).
fn one_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let mapped = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    let (a, b) = (canonical(a), canonical(b));
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (mapped(a), mapped(b))
    }
}

/// Second of the last warning (seconds since the epoch) and the refusals not
/// warned about since: a balancer that stopped sending headers, or a scan,
/// must not flood the log (each refusal has its handshake-log line anyway).
static LAST_WARN: AtomicU64 = AtomicU64::new(0);
static UNWARNED: AtomicU64 = AtomicU64::new(0);

fn warn_rate_limited(listener: &str, socket_peer: SocketAddr, reason: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_WARN.load(Ordering::Relaxed);
    if now > last
        && LAST_WARN
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let also = UNWARNED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            listener,
            %socket_peer,
            reason,
            also_refused_since_last_warning = also,
            "PROXY protocol: connection refused (at most one such warning a second)"
        );
    } else {
        UNWARNED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_instead_of_a_header_is_named() {
        // The first read takes 15 bytes: a request line and its CRLF.
        let e = not_proxy(b"GET / HTTP/1.1\r");
        assert!(e.to_string().contains("plain text, perhaps HTTP"), "{e}");
        let e = not_proxy(&[0x16, 3, 1, 0, 0xc0]);
        assert!(e.to_string().contains("a TLS ClientHello"), "{e}");
    }

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend((payload.len() as u16).to_be_bytes());
        h.extend(payload);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        assert_eq!(
            parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n").unwrap(),
            Addresses::Proxied {
                source: "192.0.2.7:51234".parse().unwrap(),
                destination: "198.51.100.1:443".parse().unwrap(),
            }
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n").unwrap(),
            Addresses::Proxied {
                source: "[2001:db8::7]:51234".parse().unwrap(),
                destination: "[2001:db8::1]:443".parse().unwrap(),
            }
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Addresses::Local);
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap(),
            Addresses::Local
        );
    }

    #[test]
    fn v1_garbage_is_refused_in_words() {
        for bad in [
            &b"PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n"[..],
            b"PROXY TCP4 10.0.0.1 10.0.0.1 99999 2\r\n",
            b"PROXY TCP5 10.0.0.1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 10.0.0.1\r\n",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, ProxyHeaderError::V1 { .. }), "{e}");
            assert!(e.reason().starts_with("expected a PROXY protocol header"));
        }
    }

    #[test]
    fn v2_proxy_local_and_tlvs() {
        let mut p = vec![192, 0, 2, 7, 198, 51, 100, 1];
        p.extend(51234u16.to_be_bytes());
        p.extend(443u16.to_be_bytes());
        p.extend([0x04, 0, 2, 0, 0]); // a NOOP TLV, skipped
        assert_eq!(
            parse(&v2(1, 0x11, &p)).unwrap(),
            Addresses::Proxied {
                source: "192.0.2.7:51234".parse().unwrap(),
                destination: "198.51.100.1:443".parse().unwrap(),
            }
        );
        assert_eq!(parse(&v2(0, 0x11, &p)).unwrap(), Addresses::Local);
        assert_eq!(parse(&v2(0, 0x00, &[])).unwrap(), Addresses::Local);
        // An IPv4-mapped IPv6 source reads as the IPv4 address.
        let mut p6 = std::net::Ipv4Addr::new(192, 0, 2, 9)
            .to_ipv6_mapped()
            .octets()
            .to_vec();
        p6.extend(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p6.extend([0, 80, 1, 187]);
        assert_eq!(
            parse(&v2(1, 0x21, &p6)).unwrap(),
            Addresses::Proxied {
                source: "192.0.2.9:80".parse().unwrap(),
                destination: "[2001:db8::1]:443".parse().unwrap(),
            }
        );
        // Version 1 in the binary format, and too few address bytes.
        let mut bad = v2(1, 0x11, &p);
        bad[12] = 0x11;
        assert!(matches!(parse(&bad), Err(ProxyHeaderError::V2(_))));
        assert!(matches!(
            parse(&v2(1, 0x11, &[1, 2, 3])),
            Err(ProxyHeaderError::V2(_))
        ));
    }

    /// The header snigate writes reads back as the addresses it was given.
    #[test]
    fn written_headers_parse_back() {
        use crate::config::ProxyProtocolVersion::{V1, V2};
        let client: SocketAddr = "192.0.2.7:51234".parse().unwrap();
        let local: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:51234".parse().unwrap();
        assert_eq!(
            header(V1, client, local),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n"
        );
        for version in [V1, V2] {
            for (c, l, want_c, want_l) in [
                (client, local, client, local),
                (mapped, local, client, local),
                (client, v6, mapped, v6),
            ] {
                assert_eq!(
                    parse(&header(version, c, l)).unwrap(),
                    // parse() reads IPv4-mapped addresses as IPv4.
                    Addresses::Proxied {
                        source: SocketAddr::new(want_c.ip().to_canonical(), want_c.port()),
                        destination: SocketAddr::new(want_l.ip().to_canonical(), want_l.port()),
                    },
                    "{version:?} {c} {l}"
                );
            }
        }
        let v2 = header(V2, client, local);
        assert!(v2.starts_with(V2_SIGNATURE));
        assert_eq!(v2.len(), 16 + 12);
        assert_eq!(header(V2, client, v6).len(), 16 + 36);
    }

    #[test]
    fn prefixes() {
        assert!(could_be_header(b"P"));
        assert!(could_be_header(b"PROXY TCP4"));
        assert!(could_be_header(b"\r\n\r\n\0"));
        assert!(!could_be_header(b"\x16\x03\x01"));
        assert!(!could_be_header(b"GET / HTTP/1.1"));
        assert!(!could_be_header(b"PROXYX"));
    }

    /// Exactly the header's bytes are taken: what follows stays in the socket.
    #[tokio::test]
    async fn reads_exactly_the_header() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut p = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
        p.extend([0x04, 0, 3, 9, 9, 9]);
        let cases: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(1, 0x11, &p),
        ];
        for header in cases {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = l.accept().await.unwrap();
            let mut sent = header.clone();
            sent.extend(b"\x16\x03\x01rest");
            tokio::io::AsyncWriteExt::write_all(&mut client, &sent)
                .await
                .unwrap();
            read_header(&mut server, Duration::from_secs(5))
                .await
                .unwrap();
            let mut rest = [0u8; 7];
            server.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"\x16\x03\x01rest");
        }
    }

    /// A v1 header that arrives a few bytes at a time is still read whole.
    #[tokio::test]
    async fn v1_in_pieces() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        let reader =
            tokio::spawn(async move { read_header(&mut server, Duration::from_secs(5)).await });
        client.set_nodelay(true).unwrap();
        for piece in b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n".chunks(4) {
            tokio::io::AsyncWriteExt::write_all(&mut client, piece)
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(
            reader.await.unwrap().unwrap(),
            Addresses::Proxied {
                source: "10.0.0.1:1".parse().unwrap(),
                destination: "10.0.0.2:2".parse().unwrap(),
            }
        );
    }

    #[tokio::test]
    async fn oversized_v2_and_long_v1_are_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut big = V2_SIGNATURE.to_vec();
        big.extend([0x21, 0x11, 0xff, 0xff]);
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend([b'1'; 200]);
        for (sent, want) in [(big, "65535 bytes"), (long, "no CRLF within 107")] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = l.accept().await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut client, &sent)
                .await
                .unwrap();
            let e = read_header(&mut server, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
