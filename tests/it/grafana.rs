//! The Grafana dashboard `deploy/grafana/snigate.json`: it is a dashboard
//! Grafana imports (a datasource variable, panels with targets), it has the
//! panels the README lists, its PromQL treats counters and histograms as
//! such, and every metric it queries exists in `/metrics` after real
//! traffic. And the metric of resumed handshakes counts real resumptions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DASHBOARD: &str = "deploy/grafana/snigate.json";

/// The panels issue 14 asks for (and the README lists), by title.
const REQUIRED_PANELS: [&str; 11] = [
    "Handshakes with and without SNI",
    "Handshake failures by reason",
    "Legacy routing",
    "Servers in rotation",
    "SharePoint health score",
    "Requests by route",
    "Request latency by route",
    "Resumed vs full handshakes",
    "Certificate expiry",
    "Active connections",
    "Reloads",
];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (panel title, expr) of every panel target.
fn panel_exprs(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            out.push((title, expr.to_string()));
        }
    }
    out
}

/// The queries of the template variables (label_values(...)).
fn variable_queries(d: &Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| match &v["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().expect("a variable's query").to_string(),
        })
        .collect()
}

/// The `snigate_*` identifiers of a PromQL expression, with their offsets.
/// Every snigate metric has that prefix, and nothing else in the dashboard
/// does (labels, functions and variables do not).
fn metric_names(expr: &str) -> Vec<(usize, &str)> {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(found) = expr[i..].find("snigate_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            out.push((start, &expr[start..end]));
        }
        i = end;
    }
    out
}

/// The function whose call's parentheses immediately enclose `at`
/// (`None` at top level or inside plain grouping parentheses).
fn enclosing_call(expr: &str, at: usize) -> Option<&str> {
    let mut depth = 0i32;
    for (i, c) in expr[..at].char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                let head = expr[..i].trim_end();
                let name_start = head
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |p| p + 1);
                let name = &head[name_start..];
                return (!name.is_empty()).then_some(name);
            }
            _ => {}
        }
    }
    None
}

/// The label matchers of the selector at `at` (the metric name's offset):
/// (label, operator, value).
fn matchers(expr: &str, at: usize, name: &str) -> Vec<(String, String, String)> {
    let rest = &expr[at + name.len()..];
    let Some(body) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let body = &body[..body.find('}').expect("closing brace of a selector")];
    let mut out = Vec::new();
    let mut s = body;
    while !s.trim().is_empty() {
        let s0 = s.trim_start_matches([',', ' ']);
        let op_at = s0.find(['=', '!']).expect("a matcher's operator");
        let label = s0[..op_at].trim().to_string();
        let op_len = if s0[op_at..].starts_with("=~")
            || s0[op_at..].starts_with("!~")
            || s0[op_at..].starts_with("!=")
        {
            2
        } else {
            1
        };
        let op = s0[op_at..op_at + op_len].to_string();
        let after = &s0[op_at + op_len..];
        let after = after.strip_prefix('"').expect("a quoted matcher value");
        let close = after.find('"').expect("closing quote");
        out.push((label, op, after[..close].to_string()));
        s = &after[close + 1..];
    }
    out
}

fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let open = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && !quoted
}

/// (1) A dashboard Grafana 10+ imports on any installation, with the
/// panels asked for, sound PromQL, and the panel list of the README.
#[test]
fn dashboard_is_valid_and_has_the_panels() {
    let d = dashboard();
    assert_eq!(d["title"], "snigate");
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(
        d["schemaVersion"].as_u64().unwrap() >= 36,
        "Grafana 10 schema"
    );
    assert!(d["id"].is_null(), "an exported dashboard has no id");

    // The datasource is a variable: the dashboard imports on any Grafana,
    // and every panel and target uses it.
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    let mut names: BTreeSet<String> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    for v in ["instance", "listener", "upstream"] {
        assert!(names.contains(v), "no ${v} variable");
    }
    for builtin in ["__rate_interval", "__interval", "__range"] {
        names.insert(builtin.to_string());
    }

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().expect("a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("an id")),
            "{title}: id twice"
        );
        assert!(titles.insert(title), "two panels titled {title}");
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(g[k].as_u64().is_some(), "{title}: gridPos.{k}");
        }
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title}: wider than the grid"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], ds_ref, "{title}: datasource");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title}: no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds not unique");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], ds_ref, "{title}: target datasource");
        }
    }
    for want in REQUIRED_PANELS {
        let p = all
            .iter()
            .find(|p| p["title"] == want)
            .unwrap_or_else(|| panic!("no panel {want:?}"));
        assert_ne!(p["type"], "row", "{want}");
    }

    for (title, expr) in panel_exprs(&d) {
        assert!(balanced(&expr), "{title}: unbalanced: {expr}");
        // Every variable used is defined (or a Grafana builtin).
        for (i, _) in expr.match_indices('$') {
            let var: String = expr[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                names.contains(&var),
                "{title}: ${var} is not defined: {expr}"
            );
        }
        let found = metric_names(&expr);
        assert!(
            !found.is_empty(),
            "{title}: queries no snigate metric: {expr}"
        );
        for (at, name) in found {
            let call = enclosing_call(&expr, at);
            let counter = name.ends_with("_total");
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.ends_with(s));
            if counter || histogram {
                // Counters only through rate()/increase().
                assert!(
                    matches!(call, Some("rate" | "increase")),
                    "{title}: {name} outside rate()/increase(): {expr}"
                );
            } else {
                // Gauges never through rate()/increase().
                assert!(
                    !matches!(call, Some("rate" | "increase" | "irate")),
                    "{title}: gauge {name} in {call:?}: {expr}"
                );
            }
            if name.ends_with("_bucket") {
                assert!(
                    expr.contains("histogram_quantile(") && expr.contains("by (le"),
                    "{title}: buckets outside histogram_quantile(.., sum by (le ..)): {expr}"
                );
            }
        }
    }

    // The README's Grafana section lists every panel.
    let readme = read("README.md");
    let section = readme
        .split("\n### Grafana\n")
        .nth(1)
        .expect("a Grafana section in the README");
    // Words as they read, whatever the line wrapping.
    let section = section.split("\n## ").next().unwrap();
    let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(section.contains(DASHBOARD));
    for p in &all {
        let title = p["title"].as_str().unwrap();
        assert!(
            section.contains(title),
            "README Grafana section does not list {title:?}"
        );
    }
}

/// Sample name -> type ("counter", "gauge", "histogram") of an OpenMetrics
/// exposition, from its `# TYPE` lines: a counter family `x` has the
/// sample `x_total`, a histogram `x_bucket`, `x_sum` and `x_count`.
fn sample_types(text: &str) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').expect("# TYPE name type");
        match kind {
            "counter" => {
                out.insert(format!("{family}_total"), "counter");
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{family}{s}"), "histogram");
                }
            }
            "gauge" => {
                out.insert(family.to_string(), "gauge");
            }
            other => panic!("unexpected metric type {other} for {family}"),
        }
    }
    out
}

/// (2) After a little of every kind of traffic, every metric any panel
/// (or variable) queries is in `/metrics`, with the labels its selectors
/// name and the values they match exactly; and every metric exposed is in
/// the README's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exposed() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let sp = backend("SP").await;
        let other = backend("B").await;
        let toml = format!(
            "[admin]\nbind = \"127.0.0.1:0\"\n\n{}{}\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"b\"\n\n\
             [[route]]\nname = \"portal\"\nhosts = [\"a.test\"]\nupstream = \"sharepoint\"\n\n\
             [[upstream]]\nname = \"sharepoint\"\nservers = [\"{}\"]\n\
             health_score_header = \"X-SharePointHealthScore\"\n\
             health = {{ path = \"/\", interval = \"100ms\" }}\n\n\
             [[upstream]]\nname = \"b\"\nservers = [\"{}\"]\n",
            cert_toml("fb", &fb),
            cert_toml("a", &a),
            sp.addr,
            other.addr,
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();

        // With SNI, over the route; resumed on a second connection.
        let config = reusable_client_config(&pki.ca_der, &ClientOpts::sni("a.test"));
        assert!(!visit(addr, &config, "a.test").await, "first visit resumed");
        assert!(visit(addr, &config, "a.test").await, "second visit not resumed");
        // Without SNI (the fallback), to the default upstream.
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(h1.send(get("b.test", "/")).await.status, 200);
        drop(h1);
        // Failures: a client that rejects the fallback certificate, and
        // plain HTTP on the TLS port.
        let refused = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("nobody.test")).await;
        assert!(refused.is_err(), "the client accepted a certificate for another name");
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        wait_closed(&mut junk, Duration::from_secs(5)).await.expect("closed");

        let main = ("listener", "main");
        let fails = |m: &Scrape, reason| {
            m.value("snigate_handshake_failures_total", &[main, ("reason", reason)])
        };
        let m = scrape_until(&proxy, |m| {
            fails(m, "client_alert") >= 1.0
                && fails(m, "not_tls") >= 1.0
                && m.value("snigate_request_duration_seconds_count", &[main]) >= 3.0
        })
        .await;
        // Each failed or rejected handshake counts under one reason.
        let failed: f64 = m
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == "snigate_handshakes_total"
                    && l.iter().any(|(k, v)| k == "outcome" && (v == "failed" || v == "rejected"))
            })
            .map(|(_, _, v)| v)
            .sum();
        let by_reason: f64 = m
            .0
            .iter()
            .filter(|(n, _, _)| n == "snigate_handshake_failures_total")
            .map(|(_, _, v)| v)
            .sum();
        assert_eq!((failed, by_reason), (2.0, 2.0));
        assert_eq!(fails(&m, "client_alert"), 1.0);
        assert_eq!(fails(&m, "not_tls"), 1.0);
        assert_eq!(m.value("snigate_handshakes_resumed_total", &[main]), 1.0);
        assert_eq!(
            m.value(
                "snigate_route_request_duration_seconds_count",
                &[main, ("route", "portal")]
            ),
            2.0
        );

        let text = String::from_utf8(admin_get(&proxy, "/metrics").await.body.to_vec()).unwrap();
        let types = sample_types(&text);
        let scrape = Scrape::parse(&text);
        let d = dashboard();
        let mut queried = BTreeSet::new();
        let exprs = panel_exprs(&d)
            .into_iter()
            .chain(variable_queries(&d).into_iter().map(|q| ("variable".to_string(), q)));
        for (title, expr) in exprs {
            for (at, name) in metric_names(&expr) {
                queried.insert(name.to_string());
                let kind = types
                    .get(name)
                    .unwrap_or_else(|| panic!("{title}: {name} is not in /metrics: {expr}\n{text}"));
                // The name PromQL sees is the sample's: counters end in
                // _total, histograms are queried by their parts.
                assert_eq!(
                    name.ends_with("_total"),
                    *kind == "counter",
                    "{title}: {name} is a {kind}"
                );
                let series: Vec<&Vec<(String, String)>> = scrape
                    .0
                    .iter()
                    .filter(|(n, _, _)| n == name)
                    .map(|(_, l, _)| l)
                    .collect();
                assert!(!series.is_empty(), "{title}: no series of {name} after the traffic");
                for (label, op, value) in matchers(&expr, at, name) {
                    // Prometheus adds these when it scrapes.
                    if label == "instance" || label == "job" {
                        continue;
                    }
                    assert!(
                        series.iter().any(|l| l.iter().any(|(k, _)| *k == label)),
                        "{title}: {name} has no label {label}"
                    );
                    if op == "=" {
                        assert!(
                            series
                                .iter()
                                .any(|l| l.iter().any(|(k, v)| *k == label && *v == value)),
                            "{title}: no series {name}{{{label}=\"{value}\"}}"
                        );
                    }
                }
            }
        }
        for name in [
            "snigate_handshakes_resumed_total",
            "snigate_handshake_failures_total",
            "snigate_legacy_tls_handshakes_total",
            "snigate_route_request_duration_seconds_bucket",
            "snigate_upstream_server_health_score",
            "snigate_upstream_server_up",
        ] {
            assert!(queried.contains(name), "the dashboard does not query {name}");
        }

        // The README's metric table names every metric exposed.
        let readme = read("README.md");
        let section = readme.split("\n## Metrics\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        for (sample, kind) in &types {
            let documented = match *kind {
                "histogram" => sample
                    .strip_suffix("_bucket")
                    .or_else(|| sample.strip_suffix("_sum"))
                    .or_else(|| sample.strip_suffix("_count"))
                    .unwrap()
                    .to_string(),
                _ => sample.clone(),
            };
            assert!(
                section.contains(&format!("`{documented}")),
                "README Metrics does not document {documented}"
            );
        }
        proxy.shutdown().await;
    })
    .await
}

/// Connects with `config` (SNI a.test), sends one request for `host` and
/// reads the answer (TLS 1.3 tickets arrive before it); whether the
/// handshake resumed, as the client saw it.
async fn visit(addr: std::net::SocketAddr, config: &Arc<ClientConfig>, host: &str) -> bool {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    let mut h1 = H1::new(tls).await;
    let reply = h1.send(get(host, "/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    resumed
}

/// (3) `snigate_handshakes_resumed_total` counts the handshakes a client
/// resumed (TLS 1.3 ticket; TLS 1.2 ticket or session id), not the full
/// ones, and they stay part of `snigate_handshakes_total{outcome="ok"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_handshakes_are_counted() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let be = backend("A").await;
        let toml = format!(
            "[admin]\nbind = \"127.0.0.1:0\"\n\n{}\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"a\"\ndefault_upstream = \"a\"\n\n\
             [[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
            cert_toml("a", &a),
            be.addr,
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();
        let main = ("listener", "main");
        let counts = |m: &Scrape| {
            (
                m.value(
                    "snigate_handshakes_total",
                    &[main, ("sni", "present"), ("outcome", "ok")],
                ),
                m.value("snigate_handshakes_resumed_total", &[main]),
            )
        };
        let mut expected = (0.0, 0.0);
        for tls12_only in [false, true] {
            let mut opts = ClientOpts::sni("a.test");
            opts.tls12_only = tls12_only;
            let config = reusable_client_config(&pki.ca_der, &opts);
            assert!(!visit(addr, &config, "a.test").await, "tls12_only {tls12_only}: the first resumed");
            expected.0 += 1.0;
            let m = scrape_until(&proxy, |m| counts(m).0 >= expected.0).await;
            assert_eq!(counts(&m), expected, "tls12_only {tls12_only}: a full handshake");
            for _ in 0..2 {
                assert!(visit(addr, &config, "a.test").await, "tls12_only {tls12_only}: not resumed");
            }
            expected = (expected.0 + 2.0, expected.1 + 2.0);
            let m = scrape_until(&proxy, |m| counts(m).0 >= expected.0).await;
            assert_eq!(counts(&m), expected, "tls12_only {tls12_only}: two resumed");
        }
        proxy.shutdown().await;
    })
    .await
}
