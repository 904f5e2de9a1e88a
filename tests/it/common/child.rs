//! External client and server processes (openssl s_client/s_server) for
//! the tests that drive snigate with real legacy TLS stacks.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

/// Whether the `openssl` command runs here (CI installs it).
pub fn openssl_installed() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed (and reaped) when dropped, on every path.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `from` to its end on a thread of its own (it ends when the process
/// does), sending each line; the receiver gets them as they come.
pub fn lines_of(from: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
