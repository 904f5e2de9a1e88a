//! The stream against a real rustls client (tokio-rustls) on loopback
//! sockets: TLS 1.2 and 1.3, bulk data both ways, records cut into single
//! bytes, key updates, close_notify, hostile bytes, and the buffers an idle
//! connection holds. Every wait is bounded by [`WAIT`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream as ClientTls;

use super::{accept, ServerTlsStream, Transport};
use crate::io::test_pattern;

/// The longest any step may take.
const WAIT: Duration = Duration::from_secs(30);
const VERSIONS: [&SupportedProtocolVersion; 2] = [&TLS13, &TLS12];

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

/// A self-signed certificate for `a.test`, with configurations for both
/// ends that accept only `version`.
fn configs(version: &'static SupportedProtocolVersion) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let mut server = ServerConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(server), Arc::new(client))
}

/// The largest write offered to a [`TestSocket`] that notes writes (only
/// one test uses one).
static LARGEST_WRITE: AtomicUsize = AtomicUsize::new(0);

/// A TCP stream that, for a test, reads one byte at a time (every record,
/// the ClientHello's too, reaches rustls in pieces), or notes the largest
/// write offered to it in [`LARGEST_WRITE`].
struct TestSocket {
    tcp: TcpStream,
    one_byte_reads: bool,
}

impl TestSocket {
    fn one_byte_reads(tcp: TcpStream) -> Self {
        Self {
            tcp,
            one_byte_reads: true,
        }
    }

    fn noted_writes(tcp: TcpStream) -> Self {
        Self {
            tcp,
            one_byte_reads: false,
        }
    }
}

impl AsyncRead for TestSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.one_byte_reads {
            return Pin::new(&mut self.tcp).poll_read(cx, buf);
        }
        let mut byte = [0u8; 1];
        let mut one = ReadBuf::new(&mut byte);
        let read = Pin::new(&mut self.tcp).poll_read(cx, &mut one);
        buf.put_slice(one.filled());
        read
    }
}

impl AsyncWrite for TestSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.one_byte_reads {
            LARGEST_WRITE.fetch_max(buf.len(), Ordering::Relaxed);
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Transport for TestSocket {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }
}

/// A server stream (its socket wrapped by `wrap`, after `pre_read` bytes
/// were read off it and handed over as snigate hands the hello) and the
/// rustls client at its other end.
async fn connected_over<T: Transport>(
    version: &'static SupportedProtocolVersion,
    pre_read: usize,
    wrap: fn(TcpStream) -> T,
) -> (ServerTlsStream<T>, ClientTls<TcpStream>) {
    let (server_config, client_config) = configs(version);
    let (server, client) = shake_hands(server_config, client_config, pre_read, wrap).await;
    (server.unwrap(), client.unwrap())
}

/// Both ends' outcomes of a handshake over loopback: `accept` with
/// `server_config` (its socket wrapped by `wrap` after `pre_read` bytes were
/// read off it) against a tokio-rustls client with `client_config`.
async fn shake_hands<T: Transport>(
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
    pre_read: usize,
    wrap: fn(TcpStream) -> T,
) -> (
    io::Result<ServerTlsStream<T>>,
    io::Result<ClientTls<TcpStream>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut read = vec![0u8; pre_read];
        tcp.read_exact(&mut read).await.unwrap();
        accept(wrap(tcp), read, server_config).await
    };
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("a.test").unwrap();
        tokio_rustls::TlsConnector::from(client_config)
            .connect(name, tcp)
            .await
    };
    within("handshake", async { tokio::join!(server, client) }).await
}

async fn connected(
    version: &'static SupportedProtocolVersion,
) -> (ServerTlsStream<TcpStream>, ClientTls<TcpStream>) {
    connected_over(version, 0, |tcp| tcp).await
}

/// Polls `stream`'s read once, with no one to wake.
fn poll_read_once<T: Transport>(stream: &mut ServerTlsStream<T>) -> Poll<io::Result<usize>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut space = [0u8; 64];
    let mut buf = ReadBuf::new(&mut space);
    Pin::new(stream)
        .poll_read(&mut cx, &mut buf)
        .map_ok(|()| buf.filled().len())
}

/// The rustls error inside an `io::Error` the stream returned.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[tokio::test]
async fn a_mebibyte_each_way_arrives_intact_and_close_notify_ends_each_side() {
    for version in VERSIONS {
        let (mut server, mut client) = connected(version).await;
        assert_eq!(server.session().protocol_version(), Some(version.version));
        assert_eq!(server.session().alpn_protocol(), Some(&b"http/1.1"[..]));
        let up = test_pattern(1 << 20, 1);
        let down = test_pattern(1 << 20, 2);
        let client_side = async {
            client.write_all(&up).await.unwrap();
            // close_notify, then TCP's FIN.
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let server_side = async {
            let mut got = Vec::new();
            // Ends with Ok: the client's close_notify is a clean EOF.
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&down).await.unwrap();
            server.shutdown().await.unwrap();
            got
        };
        let (at_client, at_server) = within("1 MiB each way", async {
            tokio::join!(client_side, server_side)
        })
        .await;
        assert_eq!(
            Sha256::digest(&at_server),
            Sha256::digest(&up),
            "{version:?}"
        );
        assert_eq!(
            Sha256::digest(&at_client),
            Sha256::digest(&down),
            "{version:?}"
        );
        let late = server.write(b"late").await.unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::BrokenPipe);
    }
}

#[tokio::test]
async fn records_read_one_byte_at_a_time_make_the_same_connection() {
    for version in VERSIONS {
        let (mut server, mut client) = connected_over(version, 3, TestSocket::one_byte_reads).await;
        let up = test_pattern(40_000, 3);
        let client_side = async {
            client.write_all(&up).await.unwrap();
            client.flush().await.unwrap();
            let mut answer = [0u8; 32];
            client.read_exact(&mut answer).await.unwrap();
            client.shutdown().await.unwrap();
            answer
        };
        let server_side = async {
            // Small reads: most records do not fit and are kept.
            let mut got = Vec::new();
            let mut space = [0u8; 7];
            while got.len() < up.len() {
                let n = server.read(&mut space).await.unwrap();
                assert!(n > 0, "EOF after {} bytes", got.len());
                got.extend_from_slice(&space[..n]);
            }
            server.write_all(&Sha256::digest(&got)).await.unwrap();
            server.flush().await.unwrap();
            assert_eq!(server.read(&mut space).await.unwrap(), 0);
        };
        let (answer, ()) = within("one byte at a time", async {
            tokio::join!(client_side, server_side)
        })
        .await;
        assert_eq!(answer[..], Sha256::digest(&up)[..], "{version:?}");
    }
}

#[tokio::test]
async fn a_key_update_from_the_client_is_followed_both_ways() {
    let (mut server, mut client) = connected(&TLS13).await;
    for round in 0..3u8 {
        let exchange = async {
            client.write_all(b"before").await.unwrap();
            // A KeyUpdate that asks for ours in return.
            client.get_mut().1.refresh_traffic_keys().unwrap();
            client
                .write_all(&[b'a', b'f', b't', b'e', b'r', round])
                .await
                .unwrap();
            client.flush().await.unwrap();
            let mut got = [0u8; 12];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got[..11], b"beforeafter");
            server.write_all(b"reply").await.unwrap();
            server.flush().await.unwrap();
            let mut reply = [0u8; 5];
            client.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"reply");
        };
        within("key update", exchange).await;
    }
}

#[tokio::test]
async fn a_tcp_close_without_close_notify_is_an_unexpected_eof_even_mid_record() {
    let cases: [&[u8]; 3] = [b"", &[0x17, 0x03], &[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3]];
    for version in VERSIONS {
        for bytes in cases {
            let (mut server, client) = connected(version).await;
            let (mut tcp, _) = client.into_inner();
            tcp.write_all(bytes).await.unwrap();
            tcp.shutdown().await.unwrap();
            let mut space = [0u8; 16];
            for _ in 0..2 {
                let e = within("EOF", server.read(&mut space)).await.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{bytes:?}: {e}");
            }
        }
    }
}

#[tokio::test]
async fn hostile_bytes_after_the_handshake_are_an_error_not_a_panic() {
    let mut body = vec![0x17, 0x03, 0x03, 0x01, 0x00];
    body.extend(test_pattern(256, 4));
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(),
        vec![0; 64],
        // A record whose tag is wrong.
        body,
        // A plaintext handshake record once traffic keys are in use.
        [&[0x16, 0x03, 0x03, 0x00, 0x04][..], &[1, 0, 0, 0]].concat(),
        test_pattern(4096, 5),
    ];
    for version in VERSIONS {
        for bytes in &cases {
            let (mut server, client) = connected(version).await;
            let (mut tcp, _) = client.into_inner();
            tcp.write_all(bytes).await.unwrap();
            let mut space = [0u8; 16];
            let e = within("garbage", server.read(&mut space))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert!(rustls_error(&e).is_some(), "{e:?}");
            // The same error again, and writes fail too.
            let again = server.read(&mut space).await.unwrap_err();
            assert_eq!(rustls_error(&again), rustls_error(&e));
            assert!(server.write(b"x").await.is_err());
        }
    }
}

#[tokio::test]
async fn an_oversize_record_is_refused_from_its_header() {
    for version in VERSIONS {
        let (mut server, client) = connected(version).await;
        let (mut tcp, _) = client.into_inner();
        tcp.write_all(&[0x17, 0x03, 0x03, 0xff, 0xff])
            .await
            .unwrap();
        let mut space = [0u8; 16];
        let e = within("oversize", server.read(&mut space))
            .await
            .unwrap_err();
        assert_eq!(
            rustls_error(&e),
            Some(&rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooLarge
            )),
            "{e}"
        );
        // Never room for the 64 KiB the header claims: at most a thread's
        // spare incoming buffer (a record and a read).
        assert!(server.buffer_capacity() <= super::spare::INCOMING);
        const { assert!(super::spare::INCOMING < 0xffff) };
    }
}

/// A handshake message joined from tiny records may fill what rustls
/// allows (64 KiB), and no more.
#[tokio::test]
async fn a_handshake_message_in_tiny_records_stops_at_64_kib() {
    let (server_config, _) = configs(&TLS13);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A ClientHello header claiming 65,520 bytes, then one byte per record.
        let mut bytes = Vec::new();
        for b in [1u8, 0x00, 0xff, 0xf0]
            .into_iter()
            .chain(std::iter::repeat_n(0, 12_000))
        {
            bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, b]);
        }
        let _ = tcp.write_all(&bytes).await;
        tcp
    };
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, Vec::new(), server_config).await
    };
    let (_tcp, server) = within("tiny records", async { tokio::join!(client, server) }).await;
    let Err(e) = server else {
        panic!("a 64 KiB handshake message in tiny records was accepted")
    };
    assert_eq!(e.to_string(), "message buffer full");
}

/// rustls' alert reaches the client, and its error the handshake log.
#[tokio::test]
async fn a_failed_handshake_sends_the_alert_and_returns_rustls_error() {
    let (server_config, _) = configs(&TLS13);
    let (_, client_config) = configs(&TLS12);
    let (server, client) = shake_hands(server_config, client_config, 0, |tcp| tcp).await;
    let Err(e) = server else {
        panic!("a handshake without a version in common succeeded")
    };
    assert_eq!(
        crate::tls::failure::HandshakeFailure::of_io(&e),
        crate::tls::failure::HandshakeFailure::NoVersion,
        "{e}"
    );
    let Err(at_client) = client else {
        panic!("the client got through")
    };
    assert!(
        matches!(
            rustls_error(&at_client),
            Some(rustls::Error::AlertReceived(_))
        ),
        "{at_client:?}"
    );
}

#[tokio::test]
async fn a_connection_waiting_for_its_next_request_holds_no_buffer() {
    for version in VERSIONS {
        let (mut server, mut client) = connected(version).await;
        for round in 0..2u64 {
            let request = test_pattern(300, round);
            client.write_all(&request).await.unwrap();
            client.flush().await.unwrap();
            // A one-byte read: the rest of the record is kept...
            let mut first = [0u8; 1];
            within("request", server.read_exact(&mut first))
                .await
                .unwrap();
            assert!(server.buffer_capacity() > 0, "{version:?}: nothing kept");
            let mut rest = vec![0u8; request.len() - 1];
            within("request", server.read_exact(&mut rest))
                .await
                .unwrap();
            let response = test_pattern(20_000, round + 10);
            within("response", server.write_all(&response))
                .await
                .unwrap();
            within("flush", server.flush()).await.unwrap();
            let mut got = vec![0u8; response.len()];
            within("response", client.read_exact(&mut got))
                .await
                .unwrap();
            assert_eq!(got, response);
            // ...and waiting for the next request holds nothing.
            assert!(poll_read_once(&mut server).is_pending());
            assert_eq!(server.buffer_capacity(), 0, "{version:?} round {round}");
        }
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_holds_back_writes_at_one_batch() {
    let (mut server, _client) = connected(&TLS13).await;
    let data = test_pattern(1 << 20, 6);
    let mut cx = Context::from_waker(Waker::noop());
    let mut accepted = 0usize;
    for _ in 0..100_000 {
        match Pin::new(&mut server).poll_write(&mut cx, &data) {
            Poll::Ready(Ok(n)) => {
                assert!((1..=4 * 16_384).contains(&n), "{n}");
                accepted += n;
            }
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => {
                assert!(server.buffer_capacity() <= 4 * (16_384 + 64));
                assert!(accepted > 0);
                return;
            }
        }
    }
    panic!("{accepted} bytes accepted and the socket never filled");
}

/// A 64 KiB response is offered to the socket in one write (four records),
/// not one system call per 16 KiB record, and arrives intact.
#[tokio::test]
async fn a_64_kib_response_goes_to_the_socket_in_one_write() {
    for version in VERSIONS {
        let (mut server, mut client) = connected_over(version, 0, TestSocket::noted_writes).await;
        LARGEST_WRITE.store(0, Ordering::Relaxed);
        let response = test_pattern(64 * 1024, 9);
        let read = async {
            let mut got = vec![0u8; response.len()];
            client.read_exact(&mut got).await.map(|_| got)
        };
        let write = async {
            server.write_all(&response).await?;
            server.flush().await
        };
        let (got, written) = within("response", async { tokio::join!(read, write) }).await;
        written.unwrap();
        assert_eq!(got.unwrap(), response, "{version:?}");
        let largest = LARGEST_WRITE.load(Ordering::Relaxed);
        assert!(
            largest > 64 * 1024,
            "{version:?}: largest write {largest} bytes"
        );
    }
}
