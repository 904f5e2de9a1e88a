//! The real `snigate` binary as a child process, for what only a process
//! has: signals, the pid file, two processes side by side. Its stderr log
//! must be JSON (`[log] format = "json"`) so tests can wait for events.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// A running `snigate run -c CONFIG`; killed when dropped.
pub struct Snigate {
    child: Child,
    log: mpsc::UnboundedReceiver<Value>,
    /// Lines snigate writes to standard output (JSON-lines logs set to "-").
    pub stdout: mpsc::UnboundedReceiver<Value>,
    /// Every stderr line read so far (JSON, or a string for other text).
    pub seen: Vec<Value>,
}

impl Snigate {
    /// Starts `snigate run -c config`.
    pub fn spawn(config: &Path) -> Snigate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_snigate"))
            .args(["run", "-c"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start snigate");
        let log = lines_of(child.stderr.take().expect("stderr"));
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        Snigate {
            child,
            log,
            stdout,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits up to `limit` for a log line (new or already seen) matching
    /// `pred`; panics with everything logged if none comes.
    pub async fn wait_log(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.log.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(None) | Err(_) => panic!(
                    "snigate logged no matching line within {limit:?}; it logged:\n{}",
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Waits for the next log line with `message` (not one seen before).
    pub async fn wait_new_message(&mut self, message: &str, limit: Duration) -> Value {
        let before = self.seen.len();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = self.seen[before..].iter().find(|v| v["message"] == message) {
                return v.clone();
            }
            match tokio::time::timeout_at(deadline, self.log.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) | Err(_) => panic!(
                    "snigate did not log \"{message}\" within {limit:?}; it logged:\n{}",
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// The address listener `name` listens on (from its "listening" line).
    pub async fn listening(&mut self, name: &str, limit: Duration) -> SocketAddr {
        let v = self
            .wait_log(limit, |v| {
                v["message"] == "listening" && v["listener"] == name
            })
            .await;
        v["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {v}"))
    }

    /// Sends `signal` (SIGHUP, SIGTERM, ...).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid()));
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            // Drain the log meanwhile; it also paces this loop.
            match tokio::time::timeout(Duration::from_millis(50), self.log.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }
}

/// Each line of `pipe`, as JSON (or a string for other text), read by a
/// thread of its own.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for Snigate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
