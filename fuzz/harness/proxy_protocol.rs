//! `proxy_protocol`: a complete PROXY protocol header (v1 text or v2
//! binary) through [`snigate::conn::proxy_protocol::parse`], which must refuse
//! anything malformed in words and never panic. The addresses of a header
//! that parses are written back with snigate's own header writer
//! ([`snigate::conn::proxy_protocol::header`], what `send_proxy_protocol` sends)
//! in both versions, and must parse back to the same addresses.

use snigate::config::ProxyProtocolVersion;
use snigate::conn::proxy_protocol::{header, parse, Addresses};

pub fn fuzz(data: &[u8]) {
    match parse(data) {
        Ok(Addresses::Proxied {
            source,
            destination,
        }) => {
            for a in [source, destination] {
                assert_eq!(a.ip(), a.ip().to_canonical(), "{a} is not canonical");
            }
            for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
                let written = header(version, source, destination);
                let back = parse(&written).unwrap_or_else(|e| {
                    panic!("{version:?} header for {source} -> {destination} does not parse: {e}")
                });
                assert_eq!(
                    back,
                    Addresses::Proxied {
                        source,
                        destination
                    },
                    "{version:?} header {written:?}"
                );
            }
        }
        Ok(Addresses::Local) => {}
        Err(e) => {
            let _ = e.reason();
        }
    }
}
