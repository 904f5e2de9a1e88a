//! Reading snigate's JSON-lines logs back (`snigate report`, `report
//! --against`): one line at a time, bounded, whatever the file holds.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Longest line read; longer ones are skipped (a log line is a few hundred
/// bytes; this keeps a file without newlines from filling memory).
pub const MAX_LINE_BYTES: u64 = 1 << 20;

/// What the next line of a file is.
pub enum LogLine<'a> {
    /// A non-blank line (without checking what it holds).
    Text(&'a [u8]),
    /// A line longer than [`MAX_LINE_BYTES`], skipped.
    TooLong,
}

/// One log file being read, line by line.
pub struct LogFile {
    path: PathBuf,
    reader: BufReader<File>,
    buf: Vec<u8>,
}

impl LogFile {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(64 * 1024, file),
            buf: Vec::new(),
        })
    }

    /// The next non-blank line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> anyhow::Result<Option<LogLine<'_>>> {
        loop {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', &mut self.buf)
                .with_context(|| format!("reading {}", self.path.display()))?;
            if read == 0 {
                return Ok(None);
            }
            if self.buf.last() != Some(&b'\n') && read as u64 == MAX_LINE_BYTES {
                self.skip_line()
                    .with_context(|| format!("reading {}", self.path.display()))?;
                return Ok(Some(LogLine::TooLong));
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(LogLine::Text(&self.buf)));
            }
        }
    }

    fn skip_line(&mut self) -> std::io::Result<()> {
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(());
                }
                None => {
                    let n = chunk.len();
                    self.reader.consume(n);
                }
            }
        }
    }
}

/// The IP of a log's `peer` field (`"192.0.2.1:51234"`,
/// `"[2001:db8::1]:443"`, or a bare address); an IPv4-mapped IPv6 address
/// is the IPv4 address. `None` when it is not an address.
pub fn peer_ip(peer: &str) -> Option<IpAddr> {
    peer.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer.parse::<IpAddr>())
        .ok()
        .map(|ip| ip.to_canonical())
}
