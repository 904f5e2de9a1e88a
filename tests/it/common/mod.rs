//! Helpers shared by the end-to-end tests: a test PKI minted with rcgen,
//! in-process backends, TLS clients with and without SNI, HTTP/1.1 and h2
//! clients, and log polling.
//!
//! Everything runs on 127.0.0.1 with port 0; nothing synchronises by sleeping.

pub mod child;
pub mod process;

mod backends;
mod clients;
mod hellos;
mod logs;
mod pki;

pub use backends::*;
pub use clients::*;
pub use hellos::*;
pub use logs::*;
pub use pki::*;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use snigate::config::Settings;
use snigate::server::workers::Workers;
use snigate::server::{Proxy, StartError};
use tokio::net::TcpListener;

/// Upper bound for one test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a test body under [`TEST_TIMEOUT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    bounded_for(TEST_TIMEOUT, f).await
}

/// Runs a test body under `limit`.
pub async fn bounded_for<F: Future>(limit: Duration, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// Writes `toml` to `dir/snigate.toml`, parses it and starts the proxy,
/// serving on the test's runtime.
pub async fn start_proxy(dir: &Path, toml: &str) -> Proxy {
    start_proxy_on(dir, toml, None).await
}

/// As [`start_proxy`], serving on `workers` threads of its own (`None`: on
/// the test's runtime).
pub async fn start_proxy_on(dir: &Path, toml: &str, workers: Option<usize>) -> Proxy {
    let path = dir.join("snigate.toml");
    std::fs::write(&path, toml).unwrap();
    let settings = Settings::parse(&path, toml)
        .unwrap_or_else(|e| panic!("configuration rejected:\n{e}\n---\n{toml}"));
    match try_start(settings, workers).await {
        Ok(p) => p,
        Err(e) => panic!("proxy did not start:\n{e}\n---\n{toml}"),
    }
}

/// Starts a proxy on `settings`, on `workers` threads of its own (`None`:
/// on the test's runtime).
pub async fn try_start(settings: Settings, workers: Option<usize>) -> Result<Proxy, StartError> {
    match workers {
        None => Proxy::start(settings).await,
        Some(n) => Proxy::start_with_workers(settings, Workers::start(n).unwrap()).await,
    }
}

/// Why a second proxy on `dir/snigate.toml` (`toml`) did not start, while
/// one runs on it; panics if it did.
pub async fn second_start_error(dir: &Path, toml: &str, workers: Option<usize>) -> String {
    let settings = Settings::parse(&dir.join("snigate.toml"), toml).unwrap();
    match try_start(settings, workers).await {
        Ok(_) => panic!("a second proxy ({workers:?} workers) started on the same addresses"),
        Err(e) => e.to_string(),
    }
}

/// An address on which nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
