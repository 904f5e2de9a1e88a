//! Bad input on the TLS port: garbage, truncated, slow, oversized
//! ClientHellos and too many connections get a closed connection, quickly,
//! and never disturb other clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use snigate::server::Proxy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
}

impl Farm {
    fn addr(&self) -> SocketAddr {
        self.proxy.addr("main").unwrap()
    }

    /// A complete request by a well-behaved client.
    async fn normal_request(&self) -> Reply {
        https_once(
            self.addr(),
            &self.pki.ca_der,
            &ClientOpts::sni("a.test"),
            get("a.test", "/ok"),
        )
        .await
        .0
    }
}

async fn farm(timeouts: &str, listener_extra: &str) -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
    let be = backend("A").await;
    let toml = format!(
        "[timeouts]\n{timeouts}\n\n{}{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
         default_upstream = \"a\"\n{listener_extra}\n\n[[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        cert_toml("a", &a),
        be.addr
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    Farm {
        _dir: dir,
        pki,
        proxy,
    }
}

/// Pseudo-random bytes from a fixed seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Sends `bytes` on a new connection (write errors ignored: the server may
/// already have closed) and returns how long the server took to close it,
/// or `None` if it was still open after `limit`.
async fn send_and_wait_closed(
    addr: SocketAddr,
    bytes: &[u8],
    eof: bool,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    if eof {
        let _ = s.shutdown().await;
    }
    wait_closed(&mut s, limit).await.map(|_| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_closed_and_other_clients_are_served() {
    bounded(async {
        // Default client_hello timeout (10 s): garbage must be refused on
        // sight, not timed out.
        let f = farm("", "").await;
        let addr = f.addr();
        let limit = Duration::from_secs(3);

        let mut tls_framed = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x02];
        tls_framed.extend(noise(7, 63));
        let mut random = noise(42, 20_000);
        random[0] = 0x47; // never mistaken for an SSLv2 header
        let inputs: Vec<(&str, Vec<u8>)> = vec![
            (
                "plain HTTP",
                b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(),
            ),
            ("random bytes", random),
            ("random bytes, high bit", noise(99, 20_000)),
            ("a TLS record that is not a ClientHello", tls_framed),
            (
                "an alert record",
                vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
            ),
        ];
        // A normal client, served while the garbage connections are open.
        let normal = async {
            let mut held = Vec::new();
            for _ in 0..3 {
                // Open garbage connections that have not sent anything yet.
                held.push(TcpStream::connect(addr).await.unwrap());
            }
            let reply = f.normal_request().await;
            assert_eq!(reply.status, 200);
            for mut s in held {
                let _ = s.write_all(b"\x00\x01\x02\x03 not tls").await;
                assert!(
                    wait_closed(&mut s, limit).await.is_some(),
                    "garbage connection left open"
                );
            }
        };
        let garbage = async {
            for (what, bytes) in &inputs {
                let took = send_and_wait_closed(addr, bytes, false, limit).await;
                assert!(
                    took.is_some(),
                    "{what}: connection still open after {limit:?}"
                );
            }
        };
        tokio::join!(normal, garbage);
        assert_eq!(f.normal_request().await.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_client_hello_then_eof_is_closed_at_once() {
    bounded(async {
        let f = farm("", "").await;
        let hello = client_hello_bytes(&f.pki.ca_der, &ClientOpts::sni("a.test"));
        assert!(hello.len() > 100);
        for (what, bytes) in [
            ("half a hello", &hello[..hello.len() / 2]),
            ("all but the last byte", &hello[..hello.len() - 1]),
            ("a record header only", &hello[..5]),
            ("one byte", &hello[..1]),
        ] {
            let took = send_and_wait_closed(f.addr(), bytes, true, Duration::from_secs(3)).await;
            // Well below the 10 s client_hello timeout: EOF is noticed.
            assert!(took.is_some(), "{what} + EOF: connection still open");
        }
        assert_eq!(f.normal_request().await.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_closed_after_client_hello_timeout_while_others_are_served() {
    bounded(async {
        let f = farm("client_hello = \"500ms\"", "").await;
        let hello = client_hello_bytes(&f.pki.ca_der, &ClientOpts::sni("a.test"));
        let started = Instant::now();
        let mut slow = TcpStream::connect(f.addr()).await.unwrap();
        slow.write_all(&hello[..hello.len() / 2]).await.unwrap();

        // Meanwhile, a normal client is served in full.
        let reply = f.normal_request().await;
        assert_eq!(reply.status, 200);
        let normal_done = started.elapsed();
        assert!(
            still_open(&slow) || normal_done >= Duration::from_millis(500),
            "the stalled connection was closed after {normal_done:?}, before its 500ms"
        );

        let closed = wait_closed(&mut slow, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(
            closed.is_some(),
            "stalled client still connected after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(450),
            "closed after {took:?}, before client_hello = 500ms"
        );
        assert!(took < Duration::from_secs(3), "closed only after {took:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_client_gets_one_deadline_for_the_whole_hello() {
    bounded(async {
        let f = farm("client_hello = \"500ms\"", "").await;
        let hello = client_hello_bytes(&f.pki.ca_der, &ClientOpts::sni("a.test"));
        let started = Instant::now();
        let mut s = TcpStream::connect(f.addr()).await.unwrap();
        // One byte every 50 ms: each read is quick, the whole hello is not.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut closed_at = None;
        for b in hello.iter().take(60) {
            tick.tick().await;
            if s.write_all(std::slice::from_ref(b)).await.is_err() || !still_open(&s) {
                closed_at = Some(started.elapsed());
                break;
            }
        }
        let took = match closed_at {
            Some(t) => t,
            None => {
                assert!(
                    wait_closed(&mut s, Duration::from_secs(3)).await.is_some(),
                    "dripping client never closed"
                );
                started.elapsed()
            }
        };
        assert!(
            took < Duration::from_millis(1500),
            "a dripping client kept its connection for {took:?}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_client_hello_is_rejected_on_its_header() {
    bounded(async {
        let f = farm("", "").await;
        let limit = Duration::from_secs(3);
        // A record header announcing 60000 bytes (above TLS's 16 KiB records).
        let mut big_record = vec![
            0x16, 0x03, 0x01, 0xEA, 0x60, 0x01, 0x00, 0xEA, 0x5C, 0x03, 0x03,
        ];
        big_record.extend(noise(3, 2000));
        // A handshake message announcing 60000 bytes over legal records.
        let mut big_message = vec![
            0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xEA, 0x60, 0x03, 0x03,
        ];
        big_message.extend(noise(5, 2000));
        for (what, bytes) in [
            ("record of 60000 bytes", big_record),
            ("ClientHello of 60000 bytes", big_message),
        ] {
            let took = send_and_wait_closed(f.addr(), &bytes, false, limit).await;
            assert!(
                took.is_some(),
                "{what}: still open after {limit:?} (waiting for the body?)"
            );
        }
        assert_eq!(f.normal_request().await.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_wait_in_the_queue_until_one_closes() {
    bounded(async {
        let f = farm("", "max_connections = 2").await;
        let addr = f.addr();
        let first = tls_connect(addr, &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();
        let second = tls_connect(addr, &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();

        // A third: the kernel completes its TCP handshake and queues it;
        // snigate does not accept it while two are open, nor close it.
        let (ca, a) = (f.pki.ca_der.clone(), ClientOpts::sni("a.test"));
        let mut third = tokio::spawn(async move {
            let tls = tls_connect(addr, &ca, &a).await?;
            let (_, mut h) = tls.into_h1().await;
            Ok::<_, std::io::Error>(h.send(get("a.test", "/3")).await.status)
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut third)
                .await
                .is_err(),
            "the third connection was served or closed while two were open"
        );

        // The first two work.
        let (_, mut h1) = first.into_h1().await;
        let (_, mut h2) = second.into_h1().await;
        assert_eq!(h1.send(get("a.test", "/1")).await.status, 200);
        assert_eq!(h2.send(get("a.test", "/2")).await.status, 200);

        // Once one closes, the queued connection is served.
        drop(h1);
        let served = third.await.unwrap();
        assert_eq!(
            served.ok(),
            Some(200),
            "the queued connection was not served"
        );
        assert_eq!(h2.send(get("a.test", "/4")).await.status, 200);
    })
    .await
}
