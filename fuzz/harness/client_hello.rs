//! `client_hello`: the bytes a client sends first, through what the proxy
//! does with them before rustls sees them: [`parse_client_hello`] (total:
//! never a panic), [`read_client_hello`] over a stream that delivers the
//! same bytes in pieces (it must come to the same answer as the parser on
//! the whole input, whatever the pieces), and the fingerprints of a parsed
//! hello (`src/fingerprint.rs`) and the other accessors of
//! [`ClientHelloInfo`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use md5::{Digest, Md5};
use sha2::Sha256;
use snigate::tls::fingerprint;
use snigate::tls::hello::{
    parse_client_hello, read_client_hello, ClientHelloInfo, HelloError, Parsed, MAX_CLIENT_HELLO,
};
use tokio::io::{AsyncRead, ReadBuf};

/// The reader's deadline: never reached, as the test stream never waits.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn fuzz(data: &[u8]) {
    let parsed = parse_client_hello(data);
    match &parsed {
        Ok(Parsed::Complete(info, consumed)) => {
            assert!(
                *consumed > 0 && *consumed <= data.len() && *consumed <= MAX_CLIENT_HELLO,
                "consumed {consumed} of {} bytes",
                data.len()
            );
            // What follows the hello does not change it.
            assert_eq!(
                parse_client_hello(&data[..*consumed]).ok(),
                parsed.as_ref().ok().cloned(),
                "the hello alone parses differently"
            );
            fingerprints(info);
        }
        Ok(Parsed::Incomplete) => {
            assert!(
                data.len() < MAX_CLIENT_HELLO,
                "Incomplete at {} bytes",
                data.len()
            );
        }
        Err(e) => {
            let _ = e.reason();
        }
    }
    for pieces in [Pieces::Whole, Pieces::Bytes, Pieces::Random(seed(data))] {
        reader_agrees(data, &parsed, pieces);
    }
}

/// [`read_client_hello`] on `data` delivered in `pieces`, against the parse
/// of the whole.
fn reader_agrees(data: &[u8], parsed: &Result<Parsed, HelloError>, pieces: Pieces) {
    let mut stream = Trickle {
        data,
        pieces,
        pending: false,
    };
    let read = super::block_on(read_client_hello(&mut stream, READ_TIMEOUT));
    let ctx = || format!("{pieces:?}: parse {parsed:?}, read {read:?}");
    match (parsed, &read) {
        (Ok(Parsed::Complete(info, consumed)), Ok(hello)) => {
            assert!(!info.sslv2, "{}", ctx());
            assert_eq!(&hello.info, info, "{}", ctx());
            check_bytes(data, &hello.bytes, *consumed, &ctx);
        }
        (Ok(Parsed::Complete(info, consumed)), Err(HelloError::Sslv2 { hello })) => {
            assert!(info.sslv2, "{}", ctx());
            assert_eq!(&hello.info, info, "{}", ctx());
            check_bytes(data, &hello.bytes, *consumed, &ctx);
        }
        (Ok(Parsed::Incomplete), Err(HelloError::Closed { received })) => {
            assert_eq!(*received, data.len(), "{}", ctx());
        }
        (Err(_), Err(e)) => {
            assert!(
                !matches!(e, HelloError::Closed { .. } | HelloError::Timeout { .. }),
                "the reader waited for bytes the parser did not need: {}",
                ctx()
            );
        }
        _ => panic!("the reader and the parser disagree: {}", ctx()),
    }
}

/// The bytes the reader kept: all of the hello, then only what followed it
/// in the same piece, never more than the limit.
fn check_bytes(data: &[u8], kept: &[u8], consumed: usize, ctx: &dyn Fn() -> String) {
    assert!(
        kept.len() >= consumed,
        "kept {} < {consumed}: {}",
        kept.len(),
        ctx()
    );
    assert!(
        kept.len() <= MAX_CLIENT_HELLO,
        "kept {}: {}",
        kept.len(),
        ctx()
    );
    assert_eq!(kept, &data[..kept.len()], "kept bytes differ: {}", ctx());
}

/// Every fingerprint and accessor of a parsed hello, and how they relate:
/// JA3 is the MD5 of the JA3 string, JA4's hashes are those of JA4_r's parts.
fn fingerprints(info: &ClientHelloInfo) {
    let _ = (
        info.max_version(),
        info.offered_versions(),
        info.offered_suites_hex(),
        info.offers_ecdsa(),
        info.server_name(),
    );
    let ja3_string = fingerprint::ja3_string(info);
    assert_eq!(
        fingerprint::ja3(info),
        hex(&Md5::digest(ja3_string.as_bytes()), 32),
        "JA3 of {ja3_string:?}"
    );
    let ja4 = fingerprint::ja4(info);
    let raw = fingerprint::ja4_raw(info);
    assert_eq!(ja4.len(), 36, "JA4 {ja4:?}");
    let mut parts = ja4.split('_');
    let mut raw_parts = raw.splitn(3, '_');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let (ra, rb, rc) = (raw_parts.next(), raw_parts.next(), raw_parts.next());
    assert_eq!(a, ra, "JA4 {ja4:?}, JA4_r {raw:?}");
    assert_eq!(a.map(str::len), Some(10), "JA4 {ja4:?}");
    let hashed = |part: Option<&str>, empty: bool| match part {
        Some(p) if !empty => hex(&Sha256::digest(p.as_bytes()), 12),
        _ => "000000000000".to_string(),
    };
    let rb = rb.unwrap_or_default();
    let rc = rc.unwrap_or_default();
    assert_eq!(
        b.unwrap_or_default(),
        hashed(Some(rb), rb.is_empty()),
        "JA4_r {raw:?}"
    );
    // Part c is zeros when no extension is left (the signature algorithms
    // alone are not hashed).
    let no_extensions = rc.is_empty() || rc.starts_with('_');
    assert_eq!(
        c.unwrap_or_default(),
        hashed(Some(rc), no_extensions),
        "JA4_r {raw:?}"
    );
}

fn hex(bytes: &[u8], digits: usize) -> String {
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(digits);
    s
}

/// How [`Trickle`] cuts the input.
#[derive(Debug, Clone, Copy)]
enum Pieces {
    /// As much as the reader asks for.
    Whole,
    /// One byte per read.
    Bytes,
    /// 1 to 300 bytes per read, chosen by a generator from this seed.
    Random(u64),
}

/// A seed from the input (FNV-1a), so that a replay cuts it the same way.
fn seed(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

/// A stream that delivers `data` in pieces, each after a `Pending` (as a
/// socket whose next segment has not arrived), then end of stream.
struct Trickle<'a> {
    data: &'a [u8],
    pieces: Pieces,
    pending: bool,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.data.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if !this.pending {
            this.pending = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pending = false;
        let want = match &mut this.pieces {
            Pieces::Whole => usize::MAX,
            Pieces::Bytes => 1,
            Pieces::Random(state) => {
                // xorshift64
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                usize::try_from(*state % 300).unwrap_or(0) + 1
            }
        };
        let n = want.min(buf.remaining()).min(this.data.len());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}
