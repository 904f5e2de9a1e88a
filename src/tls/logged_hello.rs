//! A ClientHello to and from what the handshake log keeps of it
//! ([`HelloDetails`]): what `snigate report --against` replays through
//! [`crate::tls::predict::predict`], with no network.
//!
//! The round trip keeps every field that the certificate choice
//! (`store::select`), the legacy-path check (`fit::check`), the refusal
//! reasons and the diagnosis read. What it changes decides nothing:
//! GREASE values become one ([`GREASE`]), extension types are sorted, and
//! `alpn_first_ends` (read only by JA4, which the log has) is made from the
//! ALPN names as logged.

use crate::observe::hello_details::{HelloDetails, GREASE, MAX_ALPN_NAME};
use crate::tls::hello::{is_grease, ClientHelloInfo};

/// What the handshake log keeps of `hello` (its SNI is logged apart).
pub fn details(hello: &ClientHelloInfo) -> HelloDetails {
    let mut extensions = ungreased(&hello.extensions);
    extensions.sort_unstable();
    HelloDetails {
        record_version: hello.record_version,
        client_version: hello.client_version,
        versions: ungreased(&hello.supported_versions),
        suites: ungreased(&hello.cipher_suites),
        extensions,
        groups: ungreased(&hello.groups),
        signature_algorithms: ungreased(&hello.signature_algorithms),
        ec_point_formats: hello.ec_point_formats.clone(),
        alpn: hello.alpn.clone(),
        sslv2: hello.sslv2,
    }
}

/// The hello that `details` (and the SNI logged with them) describe, as
/// the parser would have made it.
pub fn replayed(details: &HelloDetails, sni: Option<&str>) -> ClientHelloInfo {
    let alpn_first_ends = details
        .alpn
        .first()
        .map(String::as_bytes)
        .filter(|name| !name.is_empty() && name.len() <= MAX_ALPN_NAME * 3)
        .and_then(|name| Some([*name.first()?, *name.last()?]));
    ClientHelloInfo {
        sni: sni.map(str::to_string),
        record_version: details.record_version,
        client_version: details.client_version,
        supported_versions: details.versions.clone(),
        cipher_suites: details.suites.clone(),
        extensions: details.extensions.clone(),
        alpn: details.alpn.clone(),
        alpn_first_ends,
        groups: details.groups.clone(),
        ec_point_formats: details.ec_point_formats.clone(),
        signature_algorithms: details.signature_algorithms.clone(),
        sslv2: details.sslv2,
    }
}

/// `values` with every GREASE value written as [`GREASE`].
fn ungreased(values: &[u16]) -> Vec<u16> {
    values.iter().copied().map(ungreased_value).collect()
}

/// `value`, or [`GREASE`] if it is a GREASE value: what the details keep
/// (and what `conn::hello_facts` keys a hello by, so the two agree).
pub fn ungreased_value(value: u16) -> u16 {
    if is_grease(value) {
        GREASE
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome_like(grease: u16) -> ClientHelloInfo {
        ClientHelloInfo {
            sni: Some("Portal.Contoso.Test".into()),
            record_version: 0x0301,
            client_version: 0x0303,
            supported_versions: vec![grease, 0x0304, 0x0303],
            cipher_suites: vec![grease, 0x1301, 0xc02b],
            extensions: vec![grease, 43, 0, 13, 10, 16],
            alpn: vec!["h2".into(), "http/1.1".into()],
            alpn_first_ends: Some(*b"h2"),
            groups: vec![grease, 0x001d, 0x0017],
            ec_point_formats: vec![0],
            signature_algorithms: vec![0x0403, 0x0804],
            sslv2: false,
        }
    }

    #[test]
    fn grease_and_extension_order_do_not_make_a_new_hello() {
        let a = chrome_like(0x1a1a);
        let mut b = chrome_like(0xeaea);
        b.extensions.reverse();
        assert_eq!(details(&a), details(&b));
        assert_eq!(details(&a).id(), details(&b).id());
    }

    #[test]
    fn round_trip_keeps_what_the_decision_reads() {
        let hello = chrome_like(0x2a2a);
        let back = replayed(&details(&hello), hello.sni.as_deref());
        assert_eq!(back.sni, hello.sni);
        assert_eq!(back.server_name(), hello.server_name());
        assert_eq!(back.max_version(), hello.max_version());
        assert_eq!(back.offered_versions(), hello.offered_versions());
        assert_eq!(back.offered_suites_hex(), hello.offered_suites_hex());
        assert_eq!(back.offers_ecdsa(), hello.offers_ecdsa());
        assert_eq!(back.alpn, hello.alpn);
        assert_eq!(back.alpn_first_ends, hello.alpn_first_ends);
        assert_eq!(back.signature_algorithms, hello.signature_algorithms);
        for ext in [0u16, 10, 11, 13, 16, 23, 43, 51] {
            assert_eq!(
                back.extensions.contains(&ext),
                hello.extensions.contains(&ext)
            );
        }
        // Replayed twice, the same hello.
        assert_eq!(replayed(&details(&back), back.sni.as_deref()), back);
    }
}
