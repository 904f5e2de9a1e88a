//! Logs: the human log on stderr (tracing), and the two JSON-lines logs
//! (README, "Logs": handshakes, HTTP requests).
//!
//! JSON lines are handed to a writer thread through a queue, so a slow disk
//! never stalls a worker thread. The queue is capped in bytes
//! ([`LOG_QUEUE_BYTES`]): beyond it a line is dropped, counted in
//! `snigate_log_lines_dropped_total`, and a warning says how many were lost.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::config::LogFormat;
use crate::observe::catalogue::{self, ClientKind};
use crate::observe::outcome::HandshakeOutcome;

/// Bytes of JSON lines that may wait for one writer thread (one log file, or
/// standard output) before new lines are dropped. The cap was 65,536 lines,
/// and a line carries client-chosen text (a Host, a path, a User-Agent of up
/// to `max_header_bytes`), so a stalled disk could hold gigabytes; 16 MiB is
/// still tens of thousands of ordinary lines, seconds to minutes of a busy
/// proxy, enough to ride out a slow flush.
pub const LOG_QUEUE_BYTES: usize = 16 * 1024 * 1024;

use crate::config::STDOUT;

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

/// The sending end of one writer thread's queue.
#[derive(Clone)]
struct Queue {
    tx: Sender<Vec<u8>>,
    /// Bytes (allocated, so what memory the lines hold) sent and not yet
    /// written out: added by [`JsonLines::enqueue`], taken off by the writer
    /// thread once a line is written (or failed to be).
    queued: Arc<AtomicUsize>,
    /// The cap on `queued`: [`LOG_QUEUE_BYTES`] (smaller in tests).
    limit: usize,
}

impl Queue {
    /// Starts a writer thread named `name` that writes every queued line to
    /// `out`, and returns its queue.
    fn start(name: String, out: impl Write + Send + 'static, limit: usize) -> io::Result<Queue> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || write_lines(out, rx, &taken))?;
        Ok(Queue { tx, queued, limit })
    }
}

/// Why a line was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The queue holds [`Queue::limit`] bytes already.
    Full,
    /// The writer thread is gone.
    Stopped,
}

/// An append-only JSON-lines file fed by a writer thread.
#[derive(Clone)]
pub struct JsonLines {
    path: Arc<PathBuf>,
    queue: Queue,
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
            return Self::stdout(dropped);
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let name = format!("log-writer {}", path.display());
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            queue: Queue::start(name, file, LOG_QUEUE_BYTES)?,
            dropped,
        })
    }

    /// Standard output: one writer thread for the whole process, so the
    /// handshake and access logs (and the states of several reloads) share
    /// it line by line instead of interleaving inside lines.
    fn stdout(dropped: Counter<u64, AtomicU64>) -> io::Result<Self> {
        static STDOUT_LOG: std::sync::OnceLock<Queue> = std::sync::OnceLock::new();
        let queue = match STDOUT_LOG.get() {
            Some(q) => q.clone(),
            None => {
                let q = Queue::start("log-writer stdout".into(), io::stdout(), LOG_QUEUE_BYTES)?;
                // Two first opens at once: the loser's thread ends when its
                // queue (dropped here) has no sender left.
                STDOUT_LOG.get_or_init(|| q).clone()
            }
        };
        Ok(Self {
            path: Arc::new(PathBuf::from(STDOUT)),
            queue,
            dropped,
        })
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
        match self.enqueue(line) {
            Ok(()) => {}
            Err(Refused::Full) => {
                let n = self.dropped.inc() + 1;
                if n.is_power_of_two() {
                    tracing::warn!(path = %self.path.display(), dropped = n, queued_bytes = self.queue.limit, "log writer cannot keep up; lines dropped");
                }
            }
            Err(Refused::Stopped) => {
                tracing::error!(path = %self.path.display(), "log writer stopped; line dropped");
            }
        }
    }

    /// Hands `line` to the writer thread if the queue has room for it.
    fn enqueue(&self, line: Vec<u8>) -> Result<(), Refused> {
        let q = &self.queue;
        let size = line.capacity();
        // Reserve before sending, all or nothing, so that concurrent writers
        // never take the queue past its cap together.
        q.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(size).filter(|total| *total <= q.limit)
            })
            .map_err(|_| Refused::Full)?;
        q.tx.send(line).map_err(|_| {
            q.queued.fetch_sub(size, Ordering::AcqRel);
            Refused::Stopped
        })
    }
}

/// The writer thread: writes queued lines to `out`, flushing when the queue
/// is empty, and takes each line's bytes off `queued` once it is written. A
/// line that is being written (to a stalled disk) still counts: its memory
/// is still held. After a failed write the rest of what is queued at that
/// moment is dropped (still taken off `queued`), and the next line tries
/// again.
fn write_lines(out: impl Write, rx: Receiver<Vec<u8>>, queued: &AtomicUsize) {
    let mut out = BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut result = Ok(());
        let mut next = Some(first);
        // Drain what is already queued before paying for a flush.
        while let Some(line) = next {
            if result.is_ok() {
                result = out.write_all(&line);
            }
            queued.fetch_sub(line.capacity(), Ordering::AcqRel);
            next = rx.try_recv().ok();
        }
        if let Err(e) = result.and_then(|_| out.flush()) {
            tracing::error!(error = %e, "cannot write log file");
        }
    }
}

/// One line of the handshake log: a public contract, in the README's
/// "Handshake log" (fields in this order; a change here is a change there).
///
/// The line also has `client`, after `ja4`: the client software the
/// [catalogue](crate::observe::catalogue) names from `ja4`, or null
/// ([`HandshakeRecord::client`]). It is not a field: it follows from `ja4`,
/// is looked up only when a line is written, and cannot disagree with it.
#[derive(Debug, Clone)]
pub struct HandshakeRecord {
    /// When the ClientHello was read; written as RFC 3339 UTC time with
    /// milliseconds ([`timestamp`]), only when a line is written.
    pub ts: SystemTime,
    /// `"tls_handshake"`.
    pub event: &'static str,
    /// Connection id, unique in the process; the access log's `conn`.
    pub conn: u64,
    /// The listener's name (shared: see `conn::record`).
    pub listener: Arc<str>,
    /// The local address the client connected to (a PROXY header's
    /// destination behind a balancer).
    pub local: SocketAddr,
    /// The client's address (a PROXY header's source behind a balancer).
    pub peer: SocketAddr,
    /// The SNI as sent; null when the extension is absent.
    pub sni: Option<Arc<str>>,
    /// https: the listener's fallback certificate was served (always
    /// `false` on `legacy_passthrough`); passthrough: `default_upstream`.
    pub fallback: bool,
    /// The `[[certificate]]` served, or null (always on
    /// `legacy_passthrough`: the legacy upstream presents its own).
    pub certificate: Option<String>,
    /// Versions offered, highest first (`"1.2"`, ...).
    pub offered_versions: Vec<&'static str>,
    /// Cipher suites offered in the client's order, as `"0xc02b"`, GREASE
    /// dropped.
    pub offered_suites: Vec<String>,
    /// ALPN protocols offered.
    pub offered_alpn: Vec<String>,
    /// JA3 of the hello (MD5 hex); `""` without one.
    pub ja3: String,
    /// JA4 of the hello; `""` without one.
    pub ja4: Arc<str>,
    /// What came of it: `ok`, `failed` (with `reason`), `rejected` (not a
    /// usable ClientHello, or no valid PROXY header), `passthrough` or
    /// `legacy_passthrough`.
    pub outcome: HandshakeOutcome,
    /// The version negotiated (`"1.2"`, `"1.3"`), else null.
    pub version: Option<&'static str>,
    /// The cipher suite negotiated, by its IANA name, else null.
    pub suite: Option<String>,
    /// The key exchange group negotiated (`"X25519MLKEM768"`, `"X25519"`,
    /// `"secp256r1"`, ...); null when the handshake did not complete, had
    /// none (a resumed TLS 1.2 session) or the engine does not tell (OpenSSL).
    pub group: Option<&'static str>,
    /// The ALPN protocol negotiated, else null.
    pub alpn: Option<String>,
    /// Milliseconds from the accept (after a PROXY header) to the end of
    /// the handshake; passthrough: until the backend connection is open.
    pub ms: f64,
    /// `true` when the client resumed an earlier session (TLS 1.3 ticket,
    /// TLS 1.2 session id or ticket); absent for full handshakes.
    pub resumed: bool,
    /// Why the handshake did not complete, or (`legacy_passthrough`) why
    /// rustls cannot serve the client, in plain words. Absent otherwise.
    pub reason: Option<String>,
    /// A fix, where snigate knows one. Absent otherwise.
    pub hint: Option<String>,
    /// Passthrough: the upstream chosen; https: the `legacy_upstream` (on
    /// `legacy_passthrough`, or `failed` when it could not be reached).
    pub upstream: Option<String>,
    /// The TLS engine when it is not rustls: `"openssl"` for a client the
    /// `legacy_tls` engine served (or failed). Absent for rustls.
    pub engine: Option<&'static str>,
}

impl HandshakeRecord {
    /// The client software the catalogue names from this line's `ja4`;
    /// `None` when it does not know it (or no hello was read).
    pub fn client(&self) -> Option<&'static ClientKind> {
        catalogue::identify(&self.ja4)
    }
}

/// By hand, for `client` (from `ja4`, written after it). `resumed` is
/// written only when `true`; `reason`, `hint`, `upstream` and `engine`
/// only when set.
impl Serialize for HandshakeRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Every field by name: a new one does not compile until it is
        // written here too.
        let HandshakeRecord {
            ts,
            event,
            conn,
            listener,
            local,
            peer,
            sni,
            fallback,
            certificate,
            offered_versions,
            offered_suites,
            offered_alpn,
            ja3,
            ja4,
            outcome,
            version,
            suite,
            group,
            alpn,
            ms,
            resumed,
            reason,
            hint,
            upstream,
            engine,
        } = self;
        let mut line = serializer.serialize_struct("HandshakeRecord", 26)?;
        line.serialize_field("ts", &timestamp(*ts))?;
        line.serialize_field("event", event)?;
        line.serialize_field("conn", conn)?;
        line.serialize_field("listener", &**listener)?;
        // serde writes an address as its text (`Display`) in JSON.
        line.serialize_field("local", local)?;
        line.serialize_field("peer", peer)?;
        line.serialize_field("sni", &sni.as_deref())?;
        line.serialize_field("fallback", fallback)?;
        line.serialize_field("certificate", certificate)?;
        line.serialize_field("offered_versions", offered_versions)?;
        line.serialize_field("offered_suites", offered_suites)?;
        line.serialize_field("offered_alpn", offered_alpn)?;
        line.serialize_field("ja3", ja3)?;
        line.serialize_field("ja4", &**ja4)?;
        line.serialize_field("client", &self.client().map(|c| c.name.as_str()))?;
        line.serialize_field("outcome", outcome)?;
        line.serialize_field("version", version)?;
        line.serialize_field("suite", suite)?;
        line.serialize_field("group", group)?;
        line.serialize_field("alpn", alpn)?;
        line.serialize_field("ms", ms)?;
        if *resumed {
            line.serialize_field("resumed", resumed)?;
        } else {
            line.skip_field("resumed")?;
        }
        for (key, value) in [("reason", reason), ("hint", hint), ("upstream", upstream)] {
            match value {
                Some(v) => line.serialize_field(key, v)?,
                None => line.skip_field(key)?,
            }
        }
        match engine {
            Some(e) => line.serialize_field("engine", e)?,
            None => line.skip_field("engine")?,
        }
        line.end()
    }
}

/// One line of the access log: a public contract, in the README's "Access
/// log" (fields in this order; a change here is a change there).
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    /// When the request arrived (RFC 3339 UTC, milliseconds).
    pub ts: String,
    /// `"http_request"`.
    pub event: &'static str,
    /// As in the handshake log.
    pub conn: u64,
    pub listener: String,
    pub peer: String,
    /// null without SNI and on http listeners.
    pub sni: Option<String>,
    pub method: String,
    /// The request's one host, as routed; null if none.
    pub host: Option<String>,
    /// Path and query.
    pub path: String,
    /// The status sent to the client.
    pub status: u16,
    /// The upstream chosen, else null.
    pub upstream: Option<String>,
    /// `host:port` of the server that answered (or failed), else null.
    pub server: Option<String>,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Milliseconds from the request's arrival to the response's end.
    pub ms: f64,
    /// The `User-Agent` header, or null.
    pub user_agent: Option<String>,
    /// `"HTTP/1.0"`, `"HTTP/1.1"` or `"HTTP/2"` (client side).
    pub version: &'static str,
    /// The certificate served on this TLS connection (absent on plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Whether that certificate covers `host` (absent without TLS or Host):
    /// `false` means the client saw a certificate name warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered: Option<bool>,
    /// Only when snigate answered itself: what failed upstream, which
    /// timeout fired, or why the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `[[route]]` that matched, by name; null for the listener's
    /// `default_upstream` or no route.
    pub route: Option<String>,
}

/// Milliseconds with microsecond precision, for the `ms` fields.
pub fn millis(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    /// A line length at least BufWriter's buffer (8 KiB): each line goes
    /// straight to the sink, so the writer thread holds exactly one line
    /// while the sink is stalled, however it is scheduled.
    const LINE: usize = 16 * 1024;

    /// A stalled disk: every write waits until the gate opens. Sends what it
    /// received when the writer thread drops it (its queue has no sender left).
    struct StalledSink {
        gate: Arc<(Mutex<bool>, Condvar)>,
        got: Vec<u8>,
        done: Sender<Vec<u8>>,
    }

    impl Write for StalledSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, opened) = &*self.gate;
            let mut open = open.lock().expect("gate");
            while !*open {
                open = opened.wait(open).expect("gate");
            }
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for StalledSink {
        fn drop(&mut self) {
            let _ = self.done.send(std::mem::take(&mut self.got));
        }
    }

    fn line(fill: u8) -> Vec<u8> {
        let mut l = vec![fill; LINE];
        l[LINE - 1] = b'\n';
        l
    }

    #[test]
    fn the_queue_is_capped_in_bytes_while_the_writer_is_stalled() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (done, finished) = mpsc::channel();
        let sink = StalledSink {
            gate: gate.clone(),
            got: Vec::new(),
            done,
        };
        // Room for four lines and half of a fifth.
        let limit = 4 * LINE + LINE / 2;
        let log = JsonLines {
            path: Arc::new(PathBuf::from("stalled.jsonl")),
            queue: Queue::start("log-writer test".into(), sink, limit).expect("writer thread"),
            dropped: Counter::default(),
        };
        let queued = log.queue.queued.clone();

        let results: Vec<Result<(), Refused>> =
            (0..10u8).map(|i| log.enqueue(line(b'a' + i))).collect();
        let mut expected = vec![Ok(()); 4];
        expected.extend([Err(Refused::Full); 6]);
        assert_eq!(results, expected);
        assert_eq!(queued.load(Ordering::Acquire), 4 * LINE);

        // A record through the public path is dropped and counted.
        log.write(&serde_json::json!({ "ua": "x".repeat(LINE) }));
        assert_eq!(log.dropped.get(), 1);
        assert_eq!(queued.load(Ordering::Acquire), 4 * LINE);

        // The disk comes back: the four queued lines are written, in order,
        // and the queue is empty once the writer thread has finished.
        {
            let (open, opened) = &*gate;
            *open.lock().expect("gate") = true;
            opened.notify_all();
        }
        drop(log);
        let written = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer thread finished within 10 s");
        let want: Vec<u8> = (0..4u8).flat_map(|i| line(b'a' + i)).collect();
        assert!(
            written == want,
            "{} bytes written, {} expected",
            written.len(),
            want.len()
        );
        assert_eq!(queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_line_queued_after_the_writer_stopped_is_not_counted_as_queued() {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        drop(rx);
        let log = JsonLines {
            path: Arc::new(PathBuf::from("gone.jsonl")),
            queue: Queue {
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
                limit: LOG_QUEUE_BYTES,
            },
            dropped: Counter::default(),
        };
        assert_eq!(log.enqueue(line(b'x')), Err(Refused::Stopped));
        assert_eq!(log.queue.queued.load(Ordering::Acquire), 0);
    }
}
