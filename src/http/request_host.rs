//! The one host a request names (RFC 9112 §3.2, RFC 9113 §8.3.1): the route,
//! the certificate check (421), the access log and the backend all see this
//! host and no other. A pure function, so it is tested and fuzzed alone.
//!
//! What HAProxy and nginx do: two `Host` fields, a request target or h2
//! `:authority` that names another host than `Host`, or a `Host` that is
//! not a host[:port] are refused with 400; HTTP/1.1 requires a Host.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Uri, Version};

/// Longest host name (RFC 1035) plus a port and IPv6 brackets.
const MAX_AUTHORITY: usize = 253 + 2 + 6;

/// The host of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    /// Lower-cased, without port, brackets or trailing dot: what routes and
    /// certificate names are compared with.
    pub name: String,
    /// The `Host` the backend gets (host[:port] as the client wrote it).
    pub header: HeaderValue,
    /// snigate wrote it: the client named no host (HTTP/1.0, h2 without
    /// `:authority`), so there is nothing to check against the certificate.
    pub written: bool,
}

/// Why a request's host is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("more than one Host header")]
    Duplicate,
    #[error("the request target names {target}, the Host header {header}")]
    Conflict { target: String, header: String },
    #[error("not a valid host[:port]: {0:?}")]
    Invalid(String),
    #[error("an HTTP/1.1 request without a Host header")]
    Missing,
}

/// The host a request names: the request target's authority (absolute
/// form, or h2 `:authority`), which must agree with `Host` when both are
/// present, else the `Host` header. `Ok(None)` when the client named none
/// and may name none (HTTP/1.0, h2 without `:authority` and `host`).
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<RequestHost>, HostError> {
    let mut fields = headers.get_all(header::HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err(HostError::Duplicate);
    }
    // An empty Host is what a client sends when the target has no authority.
    let field = match field.filter(|v| !v.is_empty()) {
        Some(v) => Some(parse(v.as_bytes())?),
        None => None,
    };
    let Some(authority) = uri.authority() else {
        return match field {
            Some(host) => Ok(Some(host)),
            None if version == Version::HTTP_11 => Err(HostError::Missing),
            None => Ok(None),
        };
    };
    let target = parse(authority.as_str().as_bytes())?;
    match field {
        Some(host) if host.name != target.name => Err(HostError::Conflict {
            target: target.name,
            header: host.name,
        }),
        _ => Ok(Some(target)),
    }
}

/// The host snigate writes for a request that names none: the address the
/// client connected to, as an IIS IP binding would see it.
pub fn written_host(local: std::net::SocketAddr) -> RequestHost {
    let name = match local.ip().to_canonical() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => ip.to_string(),
    };
    let header = HeaderValue::from_str(&local.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
    RequestHost {
        name,
        header,
        written: true,
    }
}

/// A `host[:port]` (RFC 3986 authority without userinfo): a registered name
/// of letters, digits, `-`, `.`, `_` and `~`, or an IPv6 literal in
/// brackets, then an optional numeric port.
fn parse(value: &[u8]) -> Result<RequestHost, HostError> {
    let invalid = || HostError::Invalid(String::from_utf8_lossy(value).into_owned());
    if value.len() > MAX_AUTHORITY {
        return Err(invalid());
    }
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let end = rest.iter().position(|b| *b == b']').ok_or_else(invalid)?;
        let literal = &rest[..end];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ok {
            return Err(invalid());
        }
        (literal, &rest[end + 1..])
    } else {
        let end = value.iter().position(|b| *b == b':').unwrap_or(value.len());
        let name = &value[..end];
        let ok = name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok {
            return Err(invalid());
        }
        (name, &value[end..])
    };
    let port_ok = match port.strip_prefix(b":") {
        None => port.is_empty(),
        Some(digits) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
    };
    let name = crate::config::host_name(&String::from_utf8_lossy(host));
    if !port_ok || name.is_empty() {
        return Err(invalid());
    }
    let header = HeaderValue::from_bytes(value).map_err(|_| invalid())?;
    Ok(RequestHost {
        name,
        header,
        written: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn host(version: Version, uri: &str, hosts: &[&str]) -> Result<Option<String>, HostError> {
        let uri: Uri = uri.parse().unwrap();
        request_host(version, &uri, &headers(hosts)).map(|h| h.map(|h| h.name))
    }

    const H11: Version = Version::HTTP_11;

    #[test]
    fn host_header_or_target() {
        assert_eq!(host(H11, "/", &["A.Test:8443"]), Ok(Some("a.test".into())));
        assert_eq!(host(H11, "/", &["a.test."]), Ok(Some("a.test".into())));
        assert_eq!(host(H11, "/", &["[::1]:443"]), Ok(Some("::1".into())));
        assert_eq!(
            host(H11, "https://a.test/x", &[]),
            Ok(Some("a.test".into()))
        );
        assert_eq!(
            host(H11, "https://a.test/x", &["A.TEST:443"]),
            Ok(Some("a.test".into()))
        );
        assert_eq!(
            host(Version::HTTP_2, "https://a.test/", &[]),
            Ok(Some("a.test".into()))
        );
        assert_eq!(host(Version::HTTP_10, "/", &[]), Ok(None));
        assert_eq!(host(Version::HTTP_2, "/", &[]), Ok(None));
    }

    #[test]
    fn refused() {
        assert_eq!(
            host(H11, "/", &["a.test", "b.test"]),
            Err(HostError::Duplicate)
        );
        assert_eq!(
            host(H11, "/", &["a.test", "a.test"]),
            Err(HostError::Duplicate)
        );
        assert!(matches!(
            host(H11, "https://a.test/", &["secret.internal"]),
            Err(HostError::Conflict { .. })
        ));
        assert!(matches!(
            host(Version::HTTP_2, "https://a.test/", &["b.test"]),
            Err(HostError::Conflict { .. })
        ));
        assert_eq!(host(H11, "/", &[]), Err(HostError::Missing));
        assert_eq!(host(H11, "/", &[""]), Err(HostError::Missing));
        for bad in [
            "a.test@evil",
            "evil/a.test",
            "a test",
            "a.test:80x",
            "a.test:123456",
            "[::1",
            "[zz::1]",
            ":443",
            "a.test:443:1",
            "a\tb",
            "%61.test",
        ] {
            assert!(
                matches!(host(H11, "/", &[bad]), Err(HostError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            host(H11, "https://user@a.test/", &[]),
            Err(HostError::Invalid(_))
        ));
    }

    #[test]
    fn written_for_no_host() {
        let h = written_host("127.0.0.1:8443".parse().unwrap());
        assert_eq!(
            (h.name.as_str(), h.header.to_str().unwrap(), h.written),
            ("127.0.0.1", "127.0.0.1:8443", true)
        );
        let h = written_host("[::1]:443".parse().unwrap());
        assert_eq!(
            (h.name.as_str(), h.header.to_str().unwrap()),
            ("::1", "[::1]:443")
        );
    }
}
