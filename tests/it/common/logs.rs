//! What the proxy reports: JSON-lines logs polled until a line shows up, and
//! the admin endpoint's Prometheus metrics, scraped and parsed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use snigate::server::Proxy;
use tokio::net::TcpStream;

use super::{get, Reply, H1};

/// Polls a JSON-lines file until a line satisfies `pred`, up to `limit`.
pub async fn wait_for_json_line(
    path: &Path,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if pred(&v) {
                    return v;
                }
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "no matching line in {} within {limit:?}; file:\n{text}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a handshake-log line is that of the connection from `client` to
/// `listener`. Both ends: the kernel may give connections to two listeners
/// the same source port, so the client's address alone can name another
/// listener's line.
pub fn is_connection(
    line: &Value,
    client: std::net::SocketAddr,
    listener: std::net::SocketAddr,
) -> bool {
    line["peer"] == client.to_string().as_str() && line["local"] == listener.to_string().as_str()
}

/// Polls a JSON-lines file until it holds at least `n` lines, up to
/// `limit`; returns what is there then.
pub async fn wait_for_json_lines(path: &Path, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let lines = json_lines(path);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every JSON line of a file.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// `GET path` on the admin endpoint of `proxy`, on a fresh plain connection.
pub async fn admin_get(proxy: &Proxy, path: &str) -> Reply {
    let addr = proxy.admin_addr().expect("admin endpoint configured");
    let mut h1 = H1::new(TcpStream::connect(addr).await.unwrap()).await;
    h1.send(get("127.0.0.1", path)).await
}

/// One series of a scrape: name, labels, value.
pub type Series = (String, Vec<(String, String)>, f64);

/// A Prometheus text exposition, parsed into series and values.
pub struct Scrape(pub Vec<Series>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (head, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), Vec::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("closing brace");
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            series.push((name, labels, value));
        }
        Scrape(series)
    }

    /// The value of the one series named `name` whose labels include
    /// `labels`; 0 when there is none (a counter never touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches several series");
        found.first().copied().unwrap_or(0.0)
    }
}

/// Scrapes `/metrics` until `ready` holds (up to 5 s), and returns that scrape.
pub async fn scrape_until(proxy: &Proxy, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = admin_get(proxy, "/metrics").await;
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body.to_vec()).expect("UTF-8 metrics");
        let scrape = Scrape::parse(&text);
        if ready(&scrape) {
            return scrape;
        }
        if Instant::now() >= deadline {
            panic!("metrics never reached the expected state:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
