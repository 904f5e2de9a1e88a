//! `[[route]] paths` (issue 13, item 1): Exchange's virtual directories on
//! one host, each to its own upstream. Host first, then the longest path
//! prefix on segment boundaries, ASCII case ignored, compared as the
//! backend reads the path; the access log names the route and
//! `/metrics` counts requests per route; `check` refuses a host + path
//! pair claimed twice.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, scrape_until, toml_str, wait_for_json_line};

/// Sends one HTTP/1.1 request that asks to close, and returns the answer's
/// status and body.
async fn get(addr: SocketAddr, host: &str, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The name of the echo backend that answered.
fn backend_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["backend"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_virtual_directories_go_to_their_upstreams() {
    common::bounded(async {
        let (owa, eas, rest, other) = (
            common::backend("owa").await,
            common::backend("eas").await,
            common::backend("rest").await,
            common::backend("other").await,
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.jsonl");
        let text = format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[log]
access_log = {log}

[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"
default_upstream = "other"

[[route]]
hosts = ["mail.contoso.test"]
paths = ["/owa", "/ecp"]
upstream = "owa"

[[route]]
name = "activesync"
hosts = ["mail.contoso.test"]
paths = ["/Microsoft-Server-ActiveSync"]
upstream = "eas"

[[route]]
hosts = ["mail.contoso.test"]
upstream = "rest"

[[route]]
hosts = ["*.contoso.test"]
paths = ["/owa"]
upstream = "owa"

[[upstream]]
name = "owa"
servers = ["{}"]

[[upstream]]
name = "eas"
servers = ["{}"]

[[upstream]]
name = "rest"
servers = ["{}"]

[[upstream]]
name = "other"
servers = ["{}"]
"#,
            owa.addr,
            eas.addr,
            rest.addr,
            other.addr,
            log = toml_str(log.to_str().unwrap()),
        );
        let proxy = common::start_proxy(dir.path(), &text).await;
        let addr = proxy.addr("front").unwrap();
        let mail = "mail.contoso.test";
        let cases = [
            (mail, "/owa", "owa"),
            (mail, "/OWA/auth/logon.aspx?x=1", "owa"),
            (mail, "/ecp/", "owa"),
            (mail, "/%6fwa/", "owa"),
            (mail, "/autodiscover/../owa/x", "owa"),
            (mail, "/microsoft-server-activesync?Cmd=Ping", "eas"),
            (mail, "/owax", "rest"),
            (mail, "/rpc/rpcproxy.dll", "rest"),
            (mail, "/", "rest"),
            ("legacy.contoso.test", "/owa/", "owa"),
            // The wildcard host has only /owa: everything else is the default's.
            ("legacy.contoso.test", "/ecp", "other"),
            ("elsewhere.test", "/owa", "other"),
        ];
        for (host, target, want) in cases {
            let (status, body) = get(addr, host, target).await;
            assert_eq!(status, 200, "{host}{target}: {body}");
            assert_eq!(backend_of(&body), want, "{host}{target}");
        }
        // The request goes on unchanged: the backend sees what was sent.
        let (_, body) = get(addr, mail, "/%6fwa/").await;
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["path"], "/%6fwa/");

        // The access log names the route; null for the default upstream.
        let line = |target: &'static str| {
            let log = log.clone();
            async move {
                wait_for_json_line(&log, std::time::Duration::from_secs(5), |v| {
                    v["path"] == target
                })
                .await
            }
        };
        assert_eq!(line("/ecp/").await["route"], "mail.contoso.test/owa");
        assert_eq!(
            line("/microsoft-server-activesync?Cmd=Ping").await["route"],
            "activesync"
        );
        assert_eq!(line("/owax").await["route"], "mail.contoso.test");
        assert_eq!(line("/ecp").await["route"], Value::Null);

        // /metrics counts per route.
        let count = |s: &common::Scrape, route: &str| {
            s.value(
                "snigate_route_requests_total",
                &[("route", route), ("class", "2xx")],
            )
        };
        let scrape = scrape_until(&proxy, |s| {
            count(s, "mail.contoso.test/owa") >= 6.0 && count(s, "activesync") >= 1.0
        })
        .await;
        assert_eq!(count(&scrape, "mail.contoso.test/owa"), 6.0);
        assert_eq!(count(&scrape, "activesync"), 1.0);
        assert_eq!(count(&scrape, "mail.contoso.test"), 3.0);
        assert_eq!(count(&scrape, "*.contoso.test/owa"), 1.0);
        proxy.shutdown().await;
    })
    .await;
}

/// `check`'s errors for a configuration.
fn errors(routes: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[listener]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\n\
         [[listener]]\nname = \"b\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\n\
         {routes}\n\
         [[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:9\"]\n"
    );
    let path = dir.path().join("snigate.toml");
    match snigate::config::Settings::parse(&path, &text) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_host_and_path_claimed_twice_is_an_error() {
    let twice = errors(
        "[[route]]\nhosts = [\"m.test\"]\npaths = [\"/owa\"]\nupstream = \"u\"\n\n\
         [[route]]\nhosts = [\"M.test\"]\npaths = [\"/OWA/\"]\nupstream = \"u\"\n",
    );
    assert!(
        twice.contains("host \"m.test\" with path \"/OWA/\" is already routed by route \"m.test/owa\" on listener \"a\""),
        "{twice}"
    );
    let every_path = errors(
        "[[route]]\nhosts = [\"m.test\"]\nupstream = \"u\"\n\n\
         [[route]]\nhosts = [\"m.test\"]\npaths = [\"/\"]\nupstream = \"u\"\n",
    );
    assert!(every_path.contains("already routed"), "{every_path}");
    // On different listeners the same pair is two routes, not a clash.
    let apart = errors(
        "[[route]]\nhosts = [\"m.test\"]\nlisteners = [\"a\"]\nupstream = \"u\"\n\n\
         [[route]]\nhosts = [\"m.test\"]\nlisteners = [\"b\"]\nname = \"m-on-b\"\nupstream = \"u\"\n",
    );
    assert_eq!(apart, "");
    let names = errors(
        "[[route]]\nname = \"x\"\nhosts = [\"m.test\"]\nupstream = \"u\"\n\n\
         [[route]]\nname = \"x\"\nhosts = [\"n.test\"]\nupstream = \"u\"\n",
    );
    assert!(
        names.contains("route name \"x\" is used by another route"),
        "{names}"
    );
    let bad =
        errors("[[route]]\nhosts = [\"m.test\"]\npaths = [\"owa\", \"/a?b\"]\nupstream = \"u\"\n");
    assert!(bad.contains("path \"owa\" must start with /"), "{bad}");
    assert!(bad.contains("path \"/a?b\" must be a path alone"), "{bad}");
}
