//! Streaming a quarter gibibyte each way through the proxy keeps the test
//! process's memory bounded (bodies are never buffered whole).
//!
//! In the `solo` binary, not `it`: it measures this process's VmRSS, which
//! every other test running in the same process would add to.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use hyper::body::Body;
use serde_json::Value;
use sha2::{Digest, Sha256};
use snigate::server::Proxy;

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
}

impl Farm {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.proxy.addr(listener).unwrap()
    }
}

/// One certificate (a.test), listener "main" with a.test routed to an echo
/// backend (the same route as in `it`'s http_proxy farm).
async fn farm() -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
    let be = backend("A").await;
    let toml = format!(
        "{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"a\"\n\n\
         [[route]]\nhosts = [\"a.test\"]\nupstream = \"a\"\n\n\
         [[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
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

/// Peak VmRSS (KiB) seen by a sampler until `stop` is set.
fn rss_sampler(stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = vm_rss_kib();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            peak = peak.max(vm_rss_kib());
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarter_gibibyte_streams_both_ways_in_bounded_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    const MAX_GROWTH_KIB: u64 = 64 * 1024;
    bounded_for(Duration::from_secs(60), async {
        let f = farm().await;
        let tls = tls_connect(f.addr("main"), &f.pki.ca_der, &ClientOpts::sni("a.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        // Warm up the connection and the upstream pool.
        assert_eq!(h1.send(get("a.test", "/")).await.status, 200);
        let expected_download = tokio::task::spawn_blocking(move || pattern_sha256(SIZE));

        let before = vm_rss_kib();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = rss_sampler(stop.clone());
        let started = Instant::now();

        // Upload: generated on the fly, hashed as it is sent.
        let sent_hash = Arc::new(Mutex::new(Sha256::new()));
        let req = http::Request::builder()
            .method("PUT")
            .uri("/big-upload")
            .header("host", "a.test")
            .header("content-length", SIZE.to_string())
            .body(http_body_util::BodyExt::boxed(PatternBody::new(SIZE, Some(sent_hash.clone()))))
            .unwrap();
        let reply = h1.send(req).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo: Value = reply.json();
        let sent = hex(&sent_hash.lock().unwrap().clone().finalize());
        assert_eq!(echo["body_len"], SIZE);
        assert_eq!(echo["body_sha256"], sent, "the backend received other bytes than were sent");
        let upload_time = started.elapsed();

        // Download: hashed as it arrives.
        let resp = h1.send_streaming(get("a.test", &format!("/download/{SIZE}"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        let (len, got) = hash_body(resp.into_body()).await;
        assert_eq!(len, SIZE);
        assert_eq!(got, expected_download.await.unwrap(), "the client received other bytes than the backend sent");

        stop.store(true, Ordering::Relaxed);
        let peak = sampler.await.unwrap();
        let after = vm_rss_kib();
        eprintln!(
            "256 MiB up in {upload_time:?}, up+down in {:?}; VmRSS before {before} KiB, peak {peak} KiB, after {after} KiB",
            started.elapsed()
        );
        assert!(
            peak.saturating_sub(before) < MAX_GROWTH_KIB,
            "memory grew by {} KiB while streaming (before {before} KiB, peak {peak} KiB): bodies are being buffered",
            peak - before
        );
        assert!(after.saturating_sub(before) < MAX_GROWTH_KIB, "VmRSS before {before} KiB, after {after} KiB");
    })
    .await
}

/// This process's resident set size in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads a body to its end, hashing it; never holds more than one frame.
pub async fn hash_body<B>(body: B) -> (u64, String)
where
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    try_hash_body(body).await.expect("body failed")
}

/// SHA-256 (hex) of the first `total` bytes of the pattern.
pub fn pattern_sha256(total: u64) -> String {
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    let mut index = 0u64;
    while sent < total {
        let len = (total - sent).min(CHUNK as u64) as usize;
        hasher.update(pattern_chunk(index, len));
        sent += len as u64;
        index += 1;
    }
    hex(&hasher.finalize())
}
