//! Logs: the human log on stderr (tracing), and the two JSON-lines logs of
//! DESIGN.md (handshakes, HTTP requests).
//!
//! JSON lines are handed to a writer thread through a bounded channel, so a
//! slow disk never stalls a worker thread; when the channel is full the line
//! is counted as dropped and a warning says how many were lost.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::config::LogFormat;

/// Lines that may wait for the writer thread before new ones are dropped.
const LOG_QUEUE_LINES: usize = 65_536;

/// The log path that means standard output (`handshake_log = "-"`), for
/// containers: the process's own stdout, never reopened (an unprivileged
/// process cannot open a container's `/dev/stdout`).
pub const STDOUT: &str = "-";

/// Sets up the human log on stderr. `level` is an `EnvFilter` directive;
/// `RUST_LOG` overrides it.
pub fn init_tracing(level: &str, format: LogFormat) {
    // rustls warns once per handshake about client mistakes snigate already
    // logs in the handshake log (an IP address sent as SNI): keep those quiet
    // unless the operator names rustls in the level.
    let level = if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // A second init (tests start several proxies) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// RFC 3339 UTC timestamp with milliseconds, as in the log formats.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// An append-only JSON-lines file fed by a writer thread.
#[derive(Clone)]
pub struct JsonLines {
    path: Arc<PathBuf>,
    tx: SyncSender<Vec<u8>>,
    dropped: Counter<u64, AtomicU64>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("path", &self.path)
            .finish()
    }
}

impl JsonLines {
    /// Opens (creating folders as needed) `path` for appending and starts its
    /// writer thread; lines lost to a full queue are counted in `dropped`.
    pub fn open(path: &Path, dropped: Counter<u64, AtomicU64>) -> io::Result<Self> {
        if path.as_os_str() == STDOUT {
            return Ok(Self::stdout(dropped));
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(LOG_QUEUE_LINES);
        let name = format!("log-writer {}", path.display());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || write_lines(file, rx))?;
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            tx,
            dropped,
        })
    }

    /// Standard output: one writer thread for the whole process, so the
    /// handshake and access logs (and the states of several reloads) share
    /// it line by line instead of interleaving inside lines.
    fn stdout(dropped: Counter<u64, AtomicU64>) -> Self {
        static STDOUT_LOG: std::sync::OnceLock<(Arc<PathBuf>, SyncSender<Vec<u8>>)> =
            std::sync::OnceLock::new();
        let (path, tx) = STDOUT_LOG.get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(LOG_QUEUE_LINES);
            // A thread that cannot start leaves the channel without a
            // receiver: every line then logs "log writer stopped".
            let _ = std::thread::Builder::new()
                .name("log-writer stdout".into())
                .spawn(move || write_lines(io::stdout(), rx));
            (Arc::new(PathBuf::from(STDOUT)), tx)
        });
        Self {
            path: path.clone(),
            tx: tx.clone(),
            dropped,
        }
    }

    /// Queues one record as a JSON line.
    pub fn write<T: Serialize>(&self, record: &T) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a log record");
                return;
            }
        };
        line.push(b'\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.inc() + 1;
                if n.is_power_of_two() {
                    tracing::warn!(path = %self.path.display(), dropped = n, "log writer cannot keep up; lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(path = %self.path.display(), "log writer stopped; line dropped");
            }
        }
    }
}

fn write_lines(out: impl Write, rx: mpsc::Receiver<Vec<u8>>) {
    let mut out = BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let mut result = out.write_all(&line);
        // Drain what is already queued before paying for a flush.
        while let Ok(more) = rx.try_recv() {
            result = result.and_then(|_| out.write_all(&more));
        }
        if let Err(e) = result.and_then(|_| out.flush()) {
            tracing::error!(error = %e, "cannot write log file");
        }
    }
}

/// One line of the handshake log (field order as in DESIGN.md).
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeRecord {
    pub ts: String,
    pub event: &'static str,
    pub conn: u64,
    pub listener: String,
    pub local: String,
    pub peer: String,
    pub sni: Option<String>,
    pub fallback: bool,
    pub certificate: Option<String>,
    pub offered_versions: Vec<&'static str>,
    pub offered_suites: Vec<String>,
    pub offered_alpn: Vec<String>,
    pub ja3: String,
    pub ja4: String,
    pub outcome: &'static str,
    pub version: Option<&'static str>,
    pub suite: Option<String>,
    /// The key exchange group negotiated (`"X25519MLKEM768"`, `"X25519"`,
    /// `"secp256r1"`, ...); null when the handshake did not complete, had
    /// none (a resumed TLS 1.2 session) or the engine does not tell (OpenSSL).
    pub group: Option<&'static str>,
    pub alpn: Option<String>,
    pub ms: f64,
    /// `true` when the client resumed an earlier session (TLS 1.3 ticket,
    /// TLS 1.2 session id or ticket); absent for full handshakes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The TLS engine when it is not rustls: `"openssl"` for a client the
    /// `legacy_tls` engine served (or failed). Absent for rustls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<&'static str>,
}

/// One line of the access log.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    pub ts: String,
    pub event: &'static str,
    pub conn: u64,
    pub listener: String,
    pub peer: String,
    pub sni: Option<String>,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub status: u16,
    pub upstream: Option<String>,
    pub server: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub ms: f64,
    pub user_agent: Option<String>,
    pub version: &'static str,
    /// The certificate served on this TLS connection (absent on plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Whether that certificate covers `host` (absent without TLS or Host):
    /// `false` means the client saw a certificate name warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Milliseconds with microsecond precision, for the `ms` fields.
pub fn millis(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}
