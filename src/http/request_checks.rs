//! Checks on a request before it goes anywhere, as pure functions the HTTP
//! stage calls: a `#fragment` in the target as the client wrote it, which
//! `Upgrade` protocols pass (never `h2c`), and whether a method is one
//! snigate refuses to forward (`CONNECT`); and [`header_tokens`], the one
//! reading of a comma-separated field (`Connection`, `Upgrade`, `TE`).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};

use crate::http::request_line::RequestLine;

/// Whether a request's target, as its client wrote it (`line`, see
/// [`crate::http::request_line`]), carried a `#fragment`: hyper's parsed target
/// has dropped it, so the request would name another resource at the
/// backend (`DELETE /coll/#frag` the whole collection). Refused with 400.
/// A line whose method is not the request's is not this request's (the
/// scan lost its way): nothing is refused on its word.
pub fn target_has_fragment(line: Option<&RequestLine>, method: &Method) -> bool {
    line.is_some_and(|l| l.fragment && l.method == *method)
}

/// Whether snigate refuses a request because of its method: `CONNECT` asks
/// for a tunnel to any host and port, which a reverse proxy never opens
/// (405; nothing reaches a backend).
pub fn refused_method(method: &Method) -> bool {
    method == Method::CONNECT
}

/// The `Upgrade` an HTTP/1.1 request may pass to the backend: the protocols
/// it asks for (`Upgrade`, with `upgrade` among its `Connection` tokens)
/// whose names are in `allowed` (lower-case, as the configuration keeps
/// them), in the client's order. `None` when it asks for none of them: the
/// request then goes on as a plain request, without `Upgrade` and without
/// `Connection: upgrade`, as nginx forwards it. `h2c` never passes, listed
/// or not.
pub fn allowed_upgrade(
    version: Version,
    headers: &HeaderMap,
    allowed: &[String],
) -> Option<HeaderValue> {
    if version != Version::HTTP_11 || allowed.is_empty() {
        return None;
    }
    let asks =
        header_tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let passed: Vec<&str> = header_tokens(headers, &header::UPGRADE)
        .filter(|p| {
            // `name` or `name/version`
            let name = p.split('/').next().unwrap_or("").trim();
            !name.eq_ignore_ascii_case("h2c")
                && allowed.iter().any(|a| name.eq_ignore_ascii_case(a))
        })
        .collect();
    if passed.is_empty() {
        return None;
    }
    HeaderValue::from_str(&passed.join(", ")).ok()
}

/// The comma-separated, trimmed, non-empty elements of every `name` field,
/// in order, as written (callers compare them ignoring ASCII case); a field
/// that is not visible ASCII is skipped.
pub fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &header::HeaderName,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(pairs: &[(&str, &str)], allowed: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        allowed_upgrade(Version::HTTP_11, &h, &allowed).map(|v| v.to_str().unwrap().to_string())
    }

    const WS: &[&str] = &["websocket"];

    #[test]
    fn websocket_passes_by_default() {
        let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
        assert_eq!(upgrade(&ws, WS).as_deref(), Some("websocket"));
        let ws = [
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert_eq!(upgrade(&ws, WS).as_deref(), Some("WebSocket"));
        // Without `Connection: upgrade` it asks for nothing.
        assert_eq!(upgrade(&[("upgrade", "websocket")], WS), None);
        assert_eq!(upgrade(&ws, &[]), None);
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let allowed = vec!["websocket".to_string()];
        assert_eq!(allowed_upgrade(Version::HTTP_10, &h, &allowed), None);
    }

    #[test]
    fn h2c_and_unlisted_protocols_never_pass() {
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ];
        assert_eq!(upgrade(&h2c, WS), None);
        // Even listed (the configuration refuses it; this is the backstop).
        assert_eq!(upgrade(&h2c, &["websocket", "h2c"]), None);
        let mixed = [("connection", "upgrade"), ("upgrade", "h2c, websocket")];
        assert_eq!(upgrade(&mixed, WS).as_deref(), Some("websocket"));
        let tls = [("connection", "upgrade"), ("upgrade", "TLS/1.0")];
        assert_eq!(upgrade(&tls, WS), None);
        assert_eq!(upgrade(&tls, &["tls"]).as_deref(), Some("TLS/1.0"));
    }

    #[test]
    fn a_fragment_is_refused_only_on_its_own_requests_line() {
        let line = |m: Method, fragment| RequestLine {
            method: m,
            fragment,
        };
        let frag = line(Method::DELETE, true);
        assert!(target_has_fragment(Some(&frag), &Method::DELETE));
        assert!(!target_has_fragment(Some(&frag), &Method::GET));
        let plain = line(Method::DELETE, false);
        assert!(!target_has_fragment(Some(&plain), &Method::DELETE));
        assert!(!target_has_fragment(None, &Method::DELETE));
    }

    #[test]
    fn header_tokens_are_trimmed_non_empty_and_across_fields() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" Keep-Alive ,,x"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let all: Vec<&str> = header_tokens(&h, &header::CONNECTION).collect();
        assert_eq!(all, ["Keep-Alive", "x", "Upgrade"]);
        assert_eq!(header_tokens(&h, &header::TE).count(), 0);
    }

    #[test]
    fn only_connect_is_refused() {
        assert!(refused_method(&Method::CONNECT));
        for m in ["GET", "PROPFIND", "MKCOL", "RPC_IN_DATA", "X-ANYTHING"] {
            assert!(!refused_method(&Method::from_bytes(m.as_bytes()).unwrap()));
        }
    }
}
