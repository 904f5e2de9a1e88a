//! PROXY protocol in: a listener with `proxy_protocol = true` behind a
//! balancer reads the v1 or v2 header first and treats the client it names
//! as the connection's peer (logs, report, X-Forwarded-For); a connection
//! without a valid header, or from a source outside `trusted_proxies`, is
//! closed and logged as rejected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOG_WAIT: Duration = Duration::from_secs(5);
/// Well past the farm's `proxy_header` timeout (300 ms).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    handshakes: PathBuf,
    access: PathBuf,
    /// The raw backend of the passthrough listener.
    raw: TcpListener,
}

impl Farm {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.proxy.addr(listener).unwrap()
    }

    async fn handshake(&self, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for_json_line(&self.handshakes, LOG_WAIT, pred).await
    }

    /// The access line for `path`.
    async fn access(&self, path: &str) -> Value {
        wait_for_json_line(&self.access, LOG_WAIT, |v| v["path"] == path).await
    }
}

/// Listeners, all with `proxy_protocol = true` and default upstream "D" (the
/// echo backend): "pp" (https, any source may send the header), "pph" (http),
/// "untrusted" (https, trusted_proxies 10.0.0.0/8, so not 127.0.0.1) and
/// "trusted" (https, trusted_proxies 127.0.0.0/8), and "ppt" (passthrough
/// to a raw socket, [`Farm::raw`]). The header timeout is 300 ms.
async fn farm() -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let be = backend("D").await;
    let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = |name: &str, extra: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
             default_upstream = \"d\"\nproxy_protocol = true\n{extra}\n"
        )
    };
    let toml = format!(
        "[log]\nhandshake_log = \"logs/handshakes.jsonl\"\naccess_log = \"logs/access.jsonl\"\n\n\
         [timeouts]\nproxy_header = \"300ms\"\n\n{}{}{}{}\
         [[listener]]\nname = \"pph\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         default_upstream = \"d\"\nproxy_protocol = true\n\n\
         [[listener]]\nname = \"ppt\"\nbind = [\"127.0.0.1:0\"]\nmode = \"passthrough\"\n\
         default_upstream = \"raw\"\nproxy_protocol = true\n\n\
         [[upstream]]\nname = \"d\"\nservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"raw\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        https("pp", ""),
        https("untrusted", "trusted_proxies = [\"10.0.0.0/8\"]"),
        https("trusted", "trusted_proxies = [\"127.0.0.0/8\"]"),
        be.addr,
        raw.local_addr().unwrap()
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    assert!(
        proxy.state().settings.inactive.is_empty(),
        "proxy_protocol must be active: {:?}",
        proxy.state().settings.inactive
    );
    let logs = dir.path().join("logs");
    Farm {
        handshakes: logs.join("handshakes.jsonl"),
        access: logs.join("access.jsonl"),
        _dir: dir,
        pki,
        proxy,
        raw,
    }
}

/// A v2 header: `command` 1 = PROXY, 0 = LOCAL; `family` 0x11 TCP/IPv4,
/// 0x21 TCP/IPv6, 0x00 unspecified; then the payload (addresses, TLVs).
fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend(payload);
    h
}

/// A v2 PROXY header for a TCP connection from `src` to `dst`, with an
/// authority TLV (which snigate skips).
fn v2_proxy(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut p = Vec::new();
    let family = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            p.extend(s.ip().octets());
            p.extend(d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            p.extend(s.ip().octets());
            p.extend(d.ip().octets());
            0x21
        }
        _ => panic!("mixed families"),
    };
    p.extend(src.port().to_be_bytes());
    p.extend(dst.port().to_be_bytes());
    let authority = b"fb.test";
    p.push(0x02);
    p.extend((authority.len() as u16).to_be_bytes());
    p.extend(authority);
    v2(1, family, &p)
}

/// What one client connection through the "balancer" saw.
struct Through {
    /// The socket's own address (what the proxy sees without the header).
    socket: SocketAddr,
    /// The echo backend's answer.
    echo: Value,
}

/// Connects to `listener`, writes `header`, completes TLS without SNI and
/// sends `GET path` with a spoofed X-Forwarded-For.
async fn tls_through(f: &Farm, listener: &str, header: &[u8], path: &str) -> Through {
    let mut tcp = TcpStream::connect(f.addr(listener)).await.unwrap();
    let socket = tcp.local_addr().unwrap();
    tcp.write_all(header).await.unwrap();
    let tls = tls_over(tcp, &f.pki.ca_der, &ClientOpts::no_sni("fb.test"))
        .await
        .expect("TLS handshake after the PROXY header failed");
    let (_, mut h1) = tls.into_h1().await;
    let mut req = get("fb.test", path);
    req.headers_mut()
        .insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
    let reply = h1.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    Through {
        socket,
        echo: reply.json(),
    }
}

fn xff(echo: &Value) -> Value {
    echo["headers"]["x-forwarded-for"].clone()
}

/// The handshake and access lines of the request to `path` name `peer`, and
/// the backend saw its IP (only) in X-Forwarded-For.
async fn assert_peer(f: &Farm, t: &Through, path: &str, peer: SocketAddr, local: Option<&str>) {
    // The client's own X-Forwarded-For (6.6.6.6) is not believed: the peer
    // is the client, not a trusted proxy.
    assert_eq!(xff(&t.echo), serde_json::json!([peer.ip().to_string()]));
    let access = f.access(path).await;
    assert_eq!(access["peer"], peer.to_string(), "{access}");
    let conn = access["conn"].clone();
    let hs = f.handshake(|v| v["conn"] == conn).await;
    assert_eq!(hs["outcome"], "ok", "{hs}");
    assert_eq!(hs["peer"], peer.to_string(), "{hs}");
    if let Some(local) = local {
        assert_eq!(hs["local"], local, "{hs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_tcp4_header_names_the_client() {
    bounded(async {
        let f = farm().await;
        let header = b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n";
        let t = tls_through(&f, "pp", header, "/v1").await;
        let peer: SocketAddr = "203.0.113.7:51234".parse().unwrap();
        assert_peer(&f, &t, "/v1", peer, Some("198.51.100.1:443")).await;
        // The report counts the client by the header's address (a client
        // without SNI is tracked).
        let report = f.proxy.state().report.snapshot();
        let ips: Vec<&str> = report.clients.iter().map(|c| c.ip.as_str()).collect();
        assert!(ips.contains(&"203.0.113.7"), "{ips:?}");
        assert!(
            !ips.contains(&t.socket.ip().to_string().as_str()),
            "{ips:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_ipv4_and_ipv6_headers_name_the_client() {
    bounded(async {
        let f = farm().await;
        let src4: SocketAddr = "192.0.2.44:40000".parse().unwrap();
        let dst4: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let t = tls_through(&f, "pp", &v2_proxy(src4, dst4), "/v2-4").await;
        assert_peer(&f, &t, "/v2-4", src4, Some("198.51.100.1:443")).await;

        let src6: SocketAddr = "[2001:db8::7]:40001".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let t = tls_through(&f, "pp", &v2_proxy(src6, dst6), "/v2-6").await;
        assert_peer(&f, &t, "/v2-6", src6, Some("[2001:db8::1]:443")).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_local_and_v1_unknown_keep_the_socket_address() {
    bounded(async {
        let f = farm().await;
        let t = tls_through(&f, "pp", &v2(0, 0x00, &[]), "/local").await;
        assert_peer(&f, &t, "/local", t.socket, Some(&f.addr("pp").to_string())).await;
        let t = tls_through(&f, "pp", b"PROXY UNKNOWN\r\n", "/unknown").await;
        assert_peer(&f, &t, "/unknown", t.socket, None).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_reads_the_header_too() {
    bounded(async {
        let f = farm().await;
        let mut tcp = TcpStream::connect(f.addr("pph")).await.unwrap();
        tcp.write_all(b"PROXY TCP6 2001:db8::9 2001:db8::1 50000 80\r\n")
            .await
            .unwrap();
        let mut h1 = H1::new(tcp).await;
        let mut req = get("fb.test", "/plain");
        req.headers_mut()
            .insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        let reply = h1.send(req).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(xff(&reply.json()), serde_json::json!(["2001:db8::9"]));
        let access = f.access("/plain").await;
        assert_eq!(access["peer"], "[2001:db8::9]:50000", "{access}");
    })
    .await;
}

/// Sends `bytes` to `listener` and expects the proxy to close the connection
/// and log a rejected line for it whose reason contains `want`.
async fn assert_rejected(f: &Farm, listener: &str, bytes: &[u8], want: &str) -> Value {
    let mut tcp = TcpStream::connect(f.addr(listener)).await.unwrap();
    let socket = tcp.local_addr().unwrap();
    tcp.write_all(bytes).await.unwrap();
    assert!(
        wait_closed(&mut tcp, CLOSE_WAIT).await.is_some(),
        "{listener}: connection still open after {:?}",
        bytes.escape_ascii().to_string()
    );
    // By both ends: another listener's connection may have had the same
    // source port.
    let peer = socket.to_string();
    let line = f
        .handshake(|v| v["peer"] == peer.as_str() && v["listener"] == listener)
        .await;
    assert_eq!(line["outcome"], "rejected", "{line}");
    let reason = line["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(want), "want {want:?} in: {line}");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_garbled_oversized_and_slow_headers_are_rejected() {
    bounded(async {
        let f = farm().await;
        let expected = "expected a PROXY protocol header (listener has proxy_protocol = true)";

        // A client that connects directly and starts TLS at once.
        let mut tcp = TcpStream::connect(f.addr("pp")).await.unwrap();
        let socket = tcp.local_addr().unwrap().to_string();
        let hello = client_hello_bytes(&f.pki.ca_der, &ClientOpts::sni("fb.test"));
        tcp.write_all(&hello).await.unwrap();
        assert!(wait_closed(&mut tcp, CLOSE_WAIT).await.is_some());
        let line = f
            .handshake(|v| v["peer"] == socket.as_str() && v["listener"] == "pp")
            .await;
        assert_eq!(line["outcome"], "rejected", "{line}");
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{line}");
        assert!(reason.contains("TLS ClientHello"), "{line}");

        // Garbage, a malformed v1 header, a v1 line without its CRLF, an
        // oversized v2 header.
        assert_rejected(&f, "pp", b"GET / HTTP/1.1\r\n\r\n", expected).await;
        assert_rejected(
            &f,
            "pp",
            b"PROXY TCP4 300.1.2.3 198.51.100.1 1 443\r\n",
            "malformed PROXY v1 header",
        )
        .await;
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend([b'9'; 150]);
        assert_rejected(&f, "pp", &long, "no CRLF within 107 bytes").await;
        let mut big = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        big.extend([0x21, 0x11, 0x40, 0x00]);
        assert_rejected(&f, "pp", &big, "more than the 4096 accepted").await;

        // Half a header, then silence: the 300 ms timeout closes it.
        let line = assert_rejected(&f, "pp", b"PROXY TCP4 203.0", "within 300ms").await;
        assert!(line["ms"].as_f64().unwrap() >= 250.0, "{line}");
        // The same on the http listener.
        assert_rejected(&f, "pph", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", expected).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_may_send_the_header() {
    bounded(async {
        let f = farm().await;
        let header = b"PROXY TCP4 203.0.113.8 198.51.100.1 51235 443\r\n";
        // 127.0.0.1 is outside 10.0.0.0/8: refused, however good the header.
        let line = assert_rejected(&f, "untrusted", header, "trusted_proxies").await;
        assert!(
            line["reason"].as_str().unwrap().contains("127.0.0.1"),
            "{line}"
        );

        // Inside 127.0.0.0/8: accepted, and the client's own X-Forwarded-For
        // is still replaced (the client is not a trusted proxy).
        let t = tls_through(&f, "trusted", header, "/trusted").await;
        let peer: SocketAddr = "203.0.113.8:51235".parse().unwrap();
        assert_peer(&f, &t, "/trusted", peer, Some("198.51.100.1:443")).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_forwards_exactly_what_follows_the_header() {
    bounded(async {
        let f = farm().await;
        let hello = client_hello_bytes(&f.pki.ca_der, &ClientOpts::sni("fb.test"));
        // Header, hello and more in one write: only the header is taken.
        let mut sent = b"PROXY TCP4 203.0.113.9 198.51.100.1 51236 443\r\n".to_vec();
        sent.extend(&hello);
        sent.extend(b"more client bytes");
        let mut tcp = TcpStream::connect(f.addr("ppt")).await.unwrap();
        tcp.write_all(&sent).await.unwrap();
        let (mut backend, _) = f.raw.accept().await.unwrap();
        let mut got = vec![0u8; hello.len() + b"more client bytes".len()];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..hello.len()], &hello[..]);
        assert_eq!(&got[hello.len()..], b"more client bytes");
        let line = f.handshake(|v| v["outcome"] == "passthrough").await;
        assert_eq!(line["peer"], "203.0.113.9:51236", "{line}");
        assert_eq!(line["sni"], "fb.test", "{line}");
    })
    .await;
}
