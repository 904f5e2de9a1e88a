//! `snigate health`: one bounded `GET /healthz` against the admin endpoint,
//! for container health checks in an image that has no curl.
//!
//! Plain blocking I/O, no runtime: resolve, connect, send one HTTP/1.1
//! request with `Connection: close`, read the answer, all under one deadline
//! and a size cap, so a hung or babbling endpoint cannot keep the probe (and
//! the orchestrator waiting on it) beyond `timeout`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The path probed when neither `--url` nor the URL given names one.
pub const HEALTH_PATH: &str = "/healthz";

/// Where the admin endpoint listens when `[admin]` names no `bind`.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900);

/// The configuration read when `snigate health` is given neither `-c` nor
/// `--url` (used only if it exists, as `snigate explain` does).
pub const DEFAULT_CONFIG: &str = "config/snigate.toml";

/// Default for `--timeout`: well inside Docker's and kubelet's own probe
/// timeouts, long enough for a busy proxy to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest answer read (`/healthz` is a few hundred bytes; `--url` may point
/// at `/metrics` or `/report`).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a probe did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "\"{url}\" is not a URL to probe: {reason} (write e.g. http://127.0.0.1:9900/healthz)"
    )]
    Url { url: String, reason: String },
    #[error("{}: {message}", .file.display())]
    Config { file: PathBuf, message: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("no complete answer from {target} within {}", humantime::format_duration(*.after))]
    TimedOut { target: String, after: Duration },
    #[error("{target}: {source}")]
    Io { target: String, source: io::Error },
    #[error("{target}: not a usable HTTP answer: {reason}")]
    Response { target: String, reason: String },
}

/// What a probe asks: `http://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An IP address (without brackets) or a host name.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

impl Target {
    /// `/healthz` on the admin endpoint bound to `bind`. An unspecified
    /// address (`0.0.0.0`, `[::]`, as in containers) is probed on the
    /// loopback address of its family, which it includes.
    pub fn admin(bind: SocketAddr) -> Target {
        let ip = match bind.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Target {
            host: ip.to_string(),
            port: bind.port(),
            path: HEALTH_PATH.into(),
        }
    }

    /// Parses `http://HOST[:PORT][/PATH]`; the path defaults to `/healthz`.
    pub fn parse_url(url: &str) -> Result<Target, ProbeError> {
        let bad = |reason: &str| ProbeError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let lower = url.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &url["http://".len()..]
        } else if lower.starts_with("https://") {
            return Err(bad("the admin endpoint speaks plain HTTP, not https"));
        } else {
            return Err(bad("it does not start with http://"));
        };
        if url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("it contains spaces or control characters"));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // A fragment is never sent.
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => HEALTH_PATH.to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if authority.contains('@') {
            return Err(bad("user names and passwords are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address without its closing ']'"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(bad("the part in [] is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| bad("unexpected text after ']'"))?,
                    ),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        Ok(Target {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `/healthz` on the admin endpoint of the configuration at `path`.
    ///
    /// Only `[admin] bind` is read, not the whole configuration validated:
    /// the running proxy may be healthy on the configuration it started with
    /// while the file is being edited, and a probe must not say otherwise.
    pub fn from_config(path: &Path) -> Result<Target, ProbeError> {
        let config_error = |message: String| ProbeError::Config {
            file: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_error(format!("cannot read configuration: {e}")))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| config_error(format!("not a TOML file: {}", e.message())))?;
        let admin = match table.get("admin") {
            None => {
                return Err(config_error(
                    "no [admin] section, so there is no admin endpoint to probe; add one \
                     (bind = \"127.0.0.1:9900\") or name the URL with --url"
                        .into(),
                ))
            }
            Some(toml::Value::Table(admin)) => admin,
            Some(_) => return Err(config_error("[admin] is not a table".into())),
        };
        let bind = match admin.get("bind") {
            None => DEFAULT_ADMIN,
            Some(toml::Value::String(s)) => s.trim().parse::<SocketAddr>().map_err(|_| {
                config_error(format!("admin bind \"{s}\" is not an IP:port address"))
            })?,
            Some(_) => return Err(config_error("admin bind is not a string".into())),
        };
        Ok(Target::admin(bind))
    }

    /// `Host` header value and the URL's authority: `host:port`, IPv6 in brackets.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The target of `snigate health`: `url` if given, else `/healthz` on the
/// `[admin]` endpoint of `config`, else of [`DEFAULT_CONFIG`] if that file
/// exists, else on [`DEFAULT_ADMIN`].
pub fn target(config: Option<&Path>, url: Option<&str>) -> Result<Target, ProbeError> {
    if let Some(url) = url {
        return Target::parse_url(url);
    }
    match config {
        Some(path) => Target::from_config(path),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            Target::from_config(Path::new(DEFAULT_CONFIG))
        }
        None => Ok(Target::admin(DEFAULT_ADMIN)),
    }
}

/// An answer: status code and the body (chunked encoding removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// Healthy means `200`, as for kubelet's and most balancers' probes.
    pub fn healthy(&self) -> bool {
        self.status == 200
    }
}

/// Sends `GET target` and reads the answer, all within `timeout`.
pub fn get(target: &Target, timeout: Duration) -> Result<Reply, ProbeError> {
    let deadline = Instant::now() + timeout;
    let name = target.to_string();
    let timed_out = || ProbeError::TimedOut {
        target: name.clone(),
        after: timeout,
    };
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)
    };
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => ProbeError::Io {
            target: name.clone(),
            source,
        },
    };

    let addrs = resolve(target, left()?)?;
    let mut stream = connect(target, &addrs, &left)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: snigate-health/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.authority(),
        env!("CARGO_PKG_VERSION")
    );
    stream.set_write_timeout(Some(left()?)).map_err(io_error)?;
    stream.write_all(request.as_bytes()).map_err(io_error)?;

    let mut data = Vec::with_capacity(1024);
    let mut buf = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(left()?)).map_err(io_error)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if data.len() > MAX_RESPONSE_BYTES {
                    return Err(ProbeError::Response {
                        target: name,
                        reason: format!("longer than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                if is_complete(&data) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    parse_response(&data).map_err(|reason| ProbeError::Response {
        target: name,
        reason,
    })
}

/// Resolves a host name on a helper thread so that a stuck resolver is
/// bounded by the deadline too (the thread is left to finish on its own).
fn resolve(target: &Target, within: Duration) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let (tx, rx) = mpsc::channel();
    let query = (target.host.clone(), target.port);
    std::thread::Builder::new()
        .name("health-resolve".into())
        .spawn(move || {
            let _ = tx.send(query.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| ProbeError::Resolve {
            host: target.host.clone(),
            reason: e.to_string(),
        })?;
    let resolve_error = |reason: String| ProbeError::Resolve {
        host: target.host.clone(),
        reason,
    };
    match rx.recv_timeout(within) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(resolve_error("no addresses".into())),
        Ok(Err(e)) => Err(resolve_error(e.to_string())),
        Err(_) => Err(resolve_error(format!(
            "no answer within {}",
            humantime::format_duration(within)
        ))),
    }
}

/// Connects to the first address that accepts.
fn connect(
    target: &Target,
    addrs: &[SocketAddr],
    left: &dyn Fn() -> Result<Duration, ProbeError>,
) -> Result<TcpStream, ProbeError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, left()?) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let source = last.unwrap_or_else(|| io::Error::other("no address to connect to"));
    if matches!(
        source.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        // Whether the deadline or the kernel gave up, say which target.
        left()?;
    }
    Err(ProbeError::Connect {
        target: target.to_string(),
        source,
    })
}

/// Where the head ends (the index after `\r\n\r\n`).
fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The value of header `name` in a response head (case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether `data` already holds a whole answer with a `Content-Length`
/// body, so the probe need not wait for the server to close.
fn is_complete(data: &[u8]) -> bool {
    let Some(end) = head_end(data) else {
        return false;
    };
    let head = String::from_utf8_lossy(&data[..end]);
    match header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => data.len() >= end + len,
        None => false,
    }
}

/// Status and body of a complete HTTP/1.x answer.
pub fn parse_response(data: &[u8]) -> Result<Reply, String> {
    let end = head_end(data).ok_or_else(|| {
        if data.is_empty() {
            "the connection closed without an answer".to_string()
        } else {
            "the answer ended inside its head".to_string()
        }
    })?;
    let head = std::str::from_utf8(&data[..end]).map_err(|_| "a head that is not text")?;
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line \"{status_line}\""));
    }
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("status line \"{status_line}\""))?;
    let rest = &data[end..];
    let chunked = header(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = header(head, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("Content-Length \"{len}\""))?;
        if rest.len() < len {
            return Err(format!(
                "the body ended after {} of {len} bytes",
                rest.len()
            ));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply { status, body })
}

/// Removes chunked transfer encoding (extensions and trailers ignored).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked body cut short")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "a bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size \"{size_text}\""))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err("a chunked body cut short".into());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `snigate health`: the target (see [`target`]) and its answer.
pub fn run(
    config: Option<&Path>,
    url: Option<&str>,
    timeout: Duration,
) -> Result<(Target, Reply), ProbeError> {
    let target = target(config, url)?;
    let reply = get(&target, timeout)?;
    Ok((target, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Target {
        Target::parse_url(u).unwrap_or_else(|e| panic!("{u}: {e}"))
    }

    #[test]
    fn urls() {
        let t = url("http://127.0.0.1:9900/healthz");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9900, "/healthz")
        );
        let t = url("http://localhost:9900");
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("localhost", "/healthz")
        );
        let t = url("HTTP://[::1]:9900/metrics?x=1#frag");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9900, "/metrics?x=1")
        );
        assert_eq!(t.to_string(), "http://[::1]:9900/metrics?x=1");
        assert_eq!(url("http://a.test").port, 80);
        assert_eq!(url("http://a.test?x").path, "/?x");
        for bad in [
            "https://127.0.0.1:9900/healthz",
            "127.0.0.1:9900",
            "http://:9900/",
            "http://a.test:0/",
            "http://a.test:99999/",
            "http://a.test:x/",
            "http://[::1/",
            "http://[nope]:1/",
            "http://u:p@a.test/",
            "http://a.test/a b",
            "http://a.test/\r\nX: y",
        ] {
            assert!(Target::parse_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unspecified_admin_binds_are_probed_on_loopback() {
        let t = Target::admin("0.0.0.0:9900".parse().unwrap());
        assert_eq!(t.to_string(), "http://127.0.0.1:9900/healthz");
        let t = Target::admin("[::]:9901".parse().unwrap());
        assert_eq!(t.to_string(), "http://[::1]:9901/healthz");
        let t = Target::admin("10.1.2.3:9900".parse().unwrap());
        assert_eq!(t.host, "10.1.2.3");
    }

    #[test]
    fn admin_bind_from_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let p = write(
            "a.toml",
            "[admin]\nbind = \"0.0.0.0:9911\"\n[[listener]]\nname = 1\n",
        );
        assert_eq!(
            Target::from_config(&p).unwrap().port,
            9911,
            "only [admin] is read"
        );
        let p = write("b.toml", "[admin]\n");
        assert_eq!(
            Target::from_config(&p).unwrap().to_string(),
            "http://127.0.0.1:9900/healthz"
        );
        let p = write("c.toml", "[log]\nlevel = \"info\"\n");
        let e = Target::from_config(&p).unwrap_err().to_string();
        assert!(e.contains("no [admin] section"), "{e}");
        let p = write("d.toml", "[admin]\nbind = \"nowhere\"\n");
        assert!(Target::from_config(&p).is_err());
        let e = Target::from_config(&dir.join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read configuration"), "{e}");
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        assert!(r.healthy());
        let r = parse_response(b"HTTP/1.0 503 Busy\r\n\r\ndown").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"down"[..]));
        assert!(!r.healthy());
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"
        ));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\n\r\nok"));
    }
}
