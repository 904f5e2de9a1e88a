//! Limits an operator sets on a listener: `max_connections_per_ip` keeps one
//! address from filling `max_connections` (with a PROXY header, the address
//! it names is the one counted; `trusted_proxies` are not limited), refused
//! connections are counted in `/metrics`, and the setting is validated.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a refused connection may take to be closed.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

struct Farm {
    _dir: tempfile::TempDir,
    proxy: Proxy,
}

impl Farm {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.proxy.addr(listener).unwrap()
    }

    /// `snigate_connections_refused_total` of `listener` when `ready` holds.
    async fn refused_when(&self, listener: &str, ready: impl Fn(f64) -> bool) -> f64 {
        let labels = [("listener", listener), ("reason", "max_connections_per_ip")];
        let scrape = scrape_until(&self.proxy, |s| {
            ready(s.value("snigate_connections_refused_total", &labels))
        })
        .await;
        scrape.value("snigate_connections_refused_total", &labels)
    }
}

/// Plain-HTTP listeners in front of the echo backend "D", and an admin
/// endpoint: "main" (max_connections 100, max_connections_per_ip 20),
/// "pp" (PROXY protocol, per-IP 2), "lb" (per-IP 1, 127.0.0.3 a trusted
/// proxy).
async fn farm() -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let be = backend("D").await;
    let http = |name: &str, extra: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             default_upstream = \"d\"\n{extra}\n\n"
        )
    };
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n{}{}{}[[upstream]]\nname = \"d\"\nservers = [\"{}\"]\n",
        http("main", "max_connections = 100\nmax_connections_per_ip = 20"),
        http("pp", "proxy_protocol = true\nmax_connections_per_ip = 2"),
        http(
            "lb",
            "max_connections_per_ip = 1\ntrusted_proxies = [\"127.0.0.3\"]"
        ),
        be.addr
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    Farm { _dir: dir, proxy }
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    try_connect_from(from, to).await.unwrap()
}

/// As [`connect_from`]; a connection the proxy resets at once may already
/// fail here.
async fn try_connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// Whether the proxy closed a new connection without answering.
async fn closed(connected: std::io::Result<TcpStream>) -> bool {
    match connected {
        Err(_) => true,
        Ok(mut s) => wait_closed(&mut s, CLOSE_WAIT).await.is_some(),
    }
}

/// One request on `stream`; the status.
async fn status(stream: TcpStream, path: &str) -> u16 {
    let mut h1 = H1::new(stream).await;
    h1.send(get("app.test", path)).await.status
}

/// Whether a request on `stream` gets an answer (`false`: the proxy closed
/// the connection instead).
async fn answered(stream: std::io::Result<TcpStream>) -> bool {
    let Ok(mut stream) = stream else {
        return false;
    };
    let request = b"GET /again HTTP/1.1\r\nHost: app.test\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(CLOSE_WAIT, stream.read(&mut buf)).await;
    matches!(read, Ok(Ok(n)) if n > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_leave_room_for_others() {
    bounded(async {
        let f = farm().await;
        let addr = f.addr("main");
        assert_eq!(f.refused_when("main", |n| n == 0.0).await, 0.0);
        // As many idle connections from one address as the listener takes.
        let mut hogs = Vec::new();
        for _ in 0..100 {
            hogs.push(try_connect_from("127.0.0.1", addr).await);
        }
        // The accept loop takes them in order: 20 admitted, 80 refused.
        f.refused_when("main", |n| n == 80.0).await;
        // Another address is served at once.
        let other = connect_from("127.0.0.2", addr).await;
        let served = tokio::time::timeout(Duration::from_secs(2), status(other, "/other")).await;
        assert_eq!(served.ok(), Some(200), "127.0.0.2 not served");
        // The first 20 are open and usable; the rest were closed.
        for s in hogs.split_off(20) {
            assert!(
                closed(s).await,
                "a connection over max_connections_per_ip stayed open"
            );
        }
        let mut hogs: Vec<TcpStream> = hogs.into_iter().map(Result::unwrap).collect();
        assert!(hogs.iter().all(still_open));
        assert_eq!(status(hogs.pop().unwrap(), "/held").await, 200);
        // Its place is free again once it closed: a 21st from 127.0.0.1 gets in
        // (the closed one's slot may take a moment to be given back).
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while !answered(try_connect_from("127.0.0.1", addr).await).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no slot given back after a connection of 127.0.0.1 closed"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_21st_connection_from_one_address_is_closed_and_counted() {
    bounded(async {
        let f = farm().await;
        let addr = f.addr("main");
        let mut held = Vec::new();
        for i in 0..20 {
            // Served, so surely counted before the 21st arrives.
            let mut h1 = H1::new(connect_from("127.0.0.1", addr).await).await;
            assert_eq!(h1.send(get("app.test", &format!("/{i}"))).await.status, 200);
            held.push(h1);
        }
        assert!(
            closed(try_connect_from("127.0.0.1", addr).await).await,
            "the 21st connection from 127.0.0.1 stayed open"
        );
        assert_eq!(f.refused_when("main", |n| n >= 1.0).await, 1.0);
        // The 20 keep working.
        for h1 in &mut held {
            assert_eq!(h1.send(get("app.test", "/still")).await.status, 200);
        }
    })
    .await;
}

/// A connection to the "pp" listener whose PROXY header names `client`.
async fn through_balancer(f: &Farm, client: &str) -> TcpStream {
    let family = if client.contains(':') { "TCP6" } else { "TCP4" };
    let dst = if client.contains(':') {
        "2001:db8::1"
    } else {
        "198.51.100.1"
    };
    let mut s = TcpStream::connect(f.addr("pp")).await.unwrap();
    s.write_all(format!("PROXY {family} {client} {dst} 50000 80\r\n").as_bytes())
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_header_the_client_it_names_is_counted() {
    bounded(async {
        let f = farm().await;
        // Every connection comes from 127.0.0.1: the socket's address is not
        // what counts. Per client, 2 at most; IPv6 clients count per /64.
        let mut held = Vec::new();
        for client in [
            "203.0.113.1",
            "203.0.113.1",
            "2001:db8:1:2::a",
            "2001:db8:1:2::b",
        ] {
            let mut h1 = H1::new(through_balancer(&f, client).await).await;
            assert_eq!(h1.send(get("app.test", "/held")).await.status, 200);
            held.push(h1);
        }
        for client in ["203.0.113.1", "2001:db8:1:2::c"] {
            let mut s = through_balancer(&f, client).await;
            assert!(
                wait_closed(&mut s, CLOSE_WAIT).await.is_some(),
                "a third connection of {client} stayed open"
            );
        }
        assert_eq!(f.refused_when("pp", |n| n >= 2.0).await, 2.0);
        // Other clients behind the same balancer are served.
        for client in ["203.0.113.2", "2001:db8:1:3::a"] {
            let s = through_balancer(&f, client).await;
            assert_eq!(status(s, "/other").await, 200, "{client}");
        }
        // Once one of 203.0.113.1's connections closes, it may open another.
        drop(held.remove(0));
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while !answered(Ok(through_balancer(&f, "203.0.113.1").await)).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "203.0.113.1's slot was not given back"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_are_not_limited() {
    bounded(async {
        let f = farm().await;
        let addr = f.addr("lb");
        let mut held = Vec::new();
        for i in 0..5 {
            let mut h1 = H1::new(connect_from("127.0.0.3", addr).await).await;
            assert_eq!(h1.send(get("app.test", &format!("/{i}"))).await.status, 200);
            held.push(h1);
        }
        // Anyone else: one connection.
        let mut h1 = H1::new(connect_from("127.0.0.1", addr).await).await;
        assert_eq!(h1.send(get("app.test", "/one")).await.status, 200);
        assert!(closed(try_connect_from("127.0.0.1", addr).await).await);
        assert_eq!(f.refused_when("lb", |n| n >= 1.0).await, 1.0);
    })
    .await;
}

fn config(listener_extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:8080\"]\nmode = \"http\"\n\
         default_upstream = \"d\"\n{listener_extra}\n\
         [[upstream]]\nname = \"d\"\nservers = [\"127.0.0.1:8081\"]\n"
    )
}

#[test]
fn max_connections_per_ip_is_validated() {
    let path = std::path::Path::new("snigate.toml");
    let per_ip = |extra: &str| {
        Settings::parse(path, &config(extra)).map(|s| s.listeners[0].max_connections_per_ip)
    };
    assert_eq!(per_ip("").unwrap(), 1000, "the default");
    assert_eq!(per_ip("max_connections_per_ip = 0").unwrap(), 0);
    assert_eq!(
        per_ip("max_connections = 50\nmax_connections_per_ip = 50").unwrap(),
        50
    );
    // Line 7, column 26: the value.
    let above = per_ip("max_connections = 50\nmax_connections_per_ip = 51")
        .unwrap_err()
        .to_string();
    assert_eq!(
        above,
        "snigate.toml:7:26: listener \"main\": max_connections_per_ip 51 is above \
         max_connections (50); use a smaller value, or 0 for no per-address limit"
    );
    let negative = per_ip("max_connections_per_ip = -1")
        .unwrap_err()
        .to_string();
    assert!(negative.starts_with("snigate.toml:6:"), "{negative}");
    let misspelt = per_ip("max_connection_per_ip = 5").unwrap_err().to_string();
    assert!(
        misspelt.starts_with("snigate.toml:6:") && misspelt.contains("max_connection_per_ip"),
        "{misspelt}"
    );
}

#[test]
fn snigate_check_reports_a_bad_value_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snigate.toml");
    std::fs::write(&path, config("max_connections_per_ip = 10001")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!(
            "{}:6:26: listener \"main\": max_connections_per_ip 10001 is above max_connections (10000)",
            path.display()
        )),
        "{text}"
    );
}
