//! The request lines of an HTTP/1.1 connection as the client wrote them,
//! found by following the message framing of the bytes hyper reads, so that
//! what hyper's parsing loses can still be checked: a `#fragment` in the
//! request target. The http crate's `Uri` drops it (`DELETE /coll/#frag`
//! becomes `DELETE /coll/`, which names the whole collection), and a
//! request must never name another resource at the backend than the one
//! its client sent; so such a request is refused (400, as HAProxy does).
//!
//! [`RequestLines::feed`] takes every byte read from the client in order
//! (pipelined requests, heads split across reads); for each request line
//! it queues what the HTTP service later takes with
//! [`RequestLines::take`], one per request, in the order hyper hands them
//! over. The framing (Content-Length, chunked with trailers) is followed as
//! hyper follows it, so that a `#` in a header value, a body or a trailer
//! is never read as part of a request line. Anything hyper would refuse,
//! or that is not HTTP/1.x at all (an h2 preface, the bytes of an upgraded
//! connection), or a line longer than [`MAX_LINE`], stops the scan for the
//! rest of the connection: from then on nothing is flagged (the check can
//! only miss, never refuse a request wrongly).

use std::collections::VecDeque;

use http::Method;

/// The longest line followed (hyper's own limit for a request target is
/// 64 KiB): beyond it the scan stops.
pub const MAX_LINE: usize = 80 * 1024;

/// Request lines queued and not yet taken, at most (a pipeline longer than
/// hyper's read buffer holds is not HTTP traffic hyper will serve).
const MAX_QUEUED: usize = 256;

/// What a request line said that its parsed form no longer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Method,
    /// The request target carried a `#fragment`.
    pub fragment: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line (empty lines are skipped, as hyper does).
    Start,
    /// Header lines of the current request, until an empty line.
    Headers,
    /// This many body bytes left (Content-Length).
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// This many bytes of chunk data left, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    /// Not (or no longer) followed.
    Off,
}

/// The framing of the current request's head.
#[derive(Debug, Default)]
struct Framing {
    http11: bool,
    content_length: Option<u64>,
    /// Some Transfer-Encoding was sent; whether its last coding is chunked.
    transfer_encoding: Option<bool>,
    invalid: bool,
}

/// Follows one connection's requests (see the module documentation).
#[derive(Debug)]
pub struct RequestLines {
    state: State,
    /// The line being read, without its end.
    line: Vec<u8>,
    framing: Framing,
    queued: VecDeque<RequestLine>,
}

impl Default for RequestLines {
    fn default() -> Self {
        Self {
            state: State::Start,
            line: Vec::new(),
            framing: Framing::default(),
            queued: VecDeque::new(),
        }
    }
}

impl RequestLines {
    /// Follows the next bytes read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return,
                State::Body(left) | State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    let left = left - n;
                    self.state = match self.state {
                        State::Body(_) if left == 0 => State::Start,
                        State::Body(_) => State::Body(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                _ => {
                    let (part, end) = match memchr::memchr(b'\n', bytes) {
                        Some(i) => (&bytes[..i], true),
                        None => (bytes, false),
                    };
                    if self.line.len() + part.len() > MAX_LINE {
                        self.stop();
                        return;
                    }
                    bytes = &bytes[part.len() + usize::from(end)..];
                    if !end {
                        self.line.extend_from_slice(part);
                    } else if self.line.is_empty() {
                        // The whole line is in this read (the usual case):
                        // followed where it lies, not copied.
                        self.line_done(without_cr(part));
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(part);
                        self.line_done(without_cr(&line));
                        // Keep the allocation for the next line.
                        line.clear();
                        self.line = line;
                    }
                }
            }
        }
    }

    /// The request line of the next request hyper hands over, if it was
    /// followed.
    pub fn take(&mut self) -> Option<RequestLine> {
        self.queued.pop_front()
    }

    /// Whether every byte followed so far belongs to a complete request
    /// (head and body) whose line hyper has taken: the connection is
    /// between requests. Never true once the scan has stopped.
    pub fn between_requests(&self) -> bool {
        self.state == State::Start && self.line.is_empty() && self.queued.is_empty()
    }

    /// Frees what is kept for the next request (the line buffer grows to
    /// the longest line read, a cookie of kilobytes): a connection parked
    /// between requests keeps nothing.
    pub fn shrink(&mut self) {
        self.line = Vec::new();
        self.queued = VecDeque::new();
    }

    /// Whether the connection is no longer followed.
    pub fn stopped(&self) -> bool {
        self.state == State::Off
    }

    /// Stops following the connection (see the module documentation).
    pub fn stop(&mut self) {
        self.state = State::Off;
        self.line = Vec::new();
    }

    fn line_done(&mut self, line: &[u8]) {
        self.state = match self.state {
            State::Start if line.is_empty() => State::Start,
            State::Start => match self.request_line(line) {
                Some(()) => State::Headers,
                None => State::Off,
            },
            State::Headers if line.is_empty() => self.body(),
            State::Headers => {
                self.header(line);
                State::Headers
            }
            State::ChunkSize => match chunk_size(line) {
                Some(0) => State::Trailers,
                Some(n) => State::ChunkData(n),
                None => State::Off,
            },
            State::ChunkEnd if line.is_empty() => State::ChunkSize,
            State::Trailers if line.is_empty() => State::Start,
            State::Trailers => State::Trailers,
            _ => State::Off,
        };
        if self.state == State::Off {
            self.stop();
        }
    }

    /// `method SP target SP HTTP/1.x`: queued; `None` when it is not one.
    fn request_line(&mut self, line: &[u8]) -> Option<()> {
        let mut parts = line.split(|b| *b == b' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || target.is_empty() || self.queued.len() >= MAX_QUEUED {
            return None;
        }
        let http11 = match version {
            b"HTTP/1.1" => true,
            b"HTTP/1.0" => false,
            // An h2 preface (`PRI * HTTP/2.0`) or not HTTP/1.x at all.
            _ => return None,
        };
        let method = Method::from_bytes(method).ok()?;
        self.queued.push_back(RequestLine {
            method,
            fragment: target.contains(&b'#'),
        });
        self.framing = Framing {
            http11,
            ..Framing::default()
        };
        Some(())
    }

    /// A header line: only the framing ones matter.
    fn header(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            self.framing.invalid = true;
            return;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(|b| matches!(b, b' ' | b'\t')) {
            // hyper refuses it, obs-fold and whitespace before the colon too.
            self.framing.invalid = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = digits(value);
            match (n, self.framing.content_length) {
                (None, _) => self.framing.invalid = true,
                (Some(n), Some(prev)) if n != prev => self.framing.invalid = true,
                (Some(n), _) => self.framing.content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // As hyper: the last coding of the last field decides.
            let last = value.rsplit(|b| *b == b',').next().map(trim);
            let chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            self.framing.transfer_encoding = Some(chunked);
        }
    }

    /// After the head: the body's framing, as hyper reads it.
    fn body(&mut self) -> State {
        let f = &self.framing;
        match (f.invalid, f.transfer_encoding, f.content_length) {
            (true, ..) => State::Off,
            // Transfer-Encoding wins over Content-Length; HTTP/1.0 may
            // not use it, and a request's last coding must be chunked.
            (false, Some(true), _) if f.http11 => State::ChunkSize,
            (false, Some(_), _) => State::Off,
            (false, None, Some(n)) if n > 0 => State::Body(n),
            (false, None, _) => State::Start,
        }
    }
}

/// A line without the `\r` of its CRLF end.
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A chunk-size line: hex digits, then optional whitespace and extensions.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (hex, rest) = line.split_at(end);
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let rest = trim(rest);
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `size` bytes; the request lines found.
    fn lines(input: &str, size: usize) -> Vec<(String, bool)> {
        let mut r = RequestLines::default();
        for piece in input.as_bytes().chunks(size) {
            r.feed(piece);
        }
        std::iter::from_fn(|| r.take())
            .map(|l| (l.method.to_string(), l.fragment))
            .collect()
    }

    fn every_split(input: &str, expected: &[(&str, bool)]) {
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(m, f)| (m.to_string(), *f)).collect();
        for size in 1..=input.len() {
            assert_eq!(lines(input, size), expected, "pieces of {size}: {input:?}");
        }
    }

    #[test]
    fn a_fragment_in_the_target_and_nowhere_else() {
        every_split(
            "DELETE /litmus/frag/#ment HTTP/1.1\r\nHost: a\r\n\r\n",
            &[("DELETE", true)],
        );
        every_split(
            "GET /a%23b HTTP/1.1\r\nX-Note: #1\r\nReferer: http://a/#x\r\n\r\n\
             GET http://a/p?q#f HTTP/1.1\r\n\r\n",
            &[("GET", false), ("GET", true)],
        );
        // Bare LF line ends, leading empty lines.
        every_split(
            "\r\nGET /#x HTTP/1.0\nHost: a\n\nPUT /y HTTP/1.1\n\n",
            &[("GET", true), ("PUT", false)],
        );
    }

    #[test]
    fn bodies_are_skipped_by_their_framing() {
        let body = "GET /#in-body HTTP/1.1\r\n\r\n";
        let input = format!(
            "PUT /a HTTP/1.1\r\nContent-Length: {n}\r\n\r\n{body}\
             POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n\
             {n:x};ext=#x\r\n{body}\r\n1\r\n#\r\n0\r\nX-Trailer: #t\r\n\r\n\
             MKCOL /c/#d HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            n = body.len()
        );
        every_split(&input, &[("PUT", false), ("POST", false), ("MKCOL", true)]);
    }

    #[test]
    fn anything_hyper_refuses_stops_the_scan() {
        for input in [
            // h2 prior knowledge.
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /#x HTTP/1.1\r\n\r\n",
            // Bad chunk size, then what would look like a request.
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /#x HTTP/1.1\r\n\r\n",
            // Transfer-Encoding that does not end in chunked; in HTTP/1.0.
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET /#x HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /#x HTTP/1.1\r\n\r\n",
            // Two lengths, a folded line, a line without colon.
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxGET /#x HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\nGET /#x HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nnocolon\r\n\r\nGET /#x HTTP/1.1\r\n\r\n",
            // Bytes of an upgraded (WebSocket) connection.
            "\u{81}\u{85}GET /#x HTTP/1.1\r\n\r\n",
        ] {
            let found = lines(input, input.len());
            assert!(found.iter().all(|(_, f)| !f), "{input:?}: {found:?}");
        }
        let mut r = RequestLines::default();
        r.feed(&vec![b'a'; MAX_LINE + 1]);
        r.feed(b"\r\nGET /#x HTTP/1.1\r\n\r\n");
        assert_eq!(r.take(), None);
    }
}
