//! What every handshake record needs from its ClientHello whatever the
//! configuration (the report and the metrics read them): the hello's JA4,
//! its details and their id. Computed once per distinct hello on each
//! worker thread, then looked up.
//!
//! A farm sees a handful of client stacks, each sending the same hello
//! again and again, up to GREASE values and (Chrome, Firefox) the order of
//! extensions, which neither JA4 nor the details keep. Two SHA-256 digests
//! and the JA4's sorting and formatting were a fifth of snigate's own
//! instructions per passthrough connection (`benches/callgrind-connection.sh`);
//! a lookup is the details' hash and one comparison.
//!
//! The key is what the details keep, written as bytes without building
//! them: GREASE made one value, extensions sorted, every list prefixed by
//! its length (so no two hellos write the same bytes), and the one fact
//! JA4 reads that the details leave out, the first ALPN name's first and
//! last byte as sent (the details keep the name with invalid UTF-8
//! replaced). JA4 and the details are functions of that key, so a hit is
//! exact: no hash is trusted to tell two hellos apart. The key is written
//! into a buffer kept per thread, so a hit allocates nothing (building the
//! details to look them up was 6 allocations per connection).
//! Hand-written: a bounded map per thread is all it needs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::observe::handshake_log::LoggedHello;
use crate::sync::ClientKeyHasher;
use crate::tls::fingerprint::ja4;
use crate::tls::hello::ClientHelloInfo;
use crate::tls::logged_hello::{details, ungreased_value};

/// Distinct hellos kept per thread; when full the map starts again (a
/// flood of made-up hellos costs what every hello cost before).
const KEPT: usize = 1024;

/// A hello's JA4, and its details with their id.
#[derive(Debug)]
pub struct HelloFacts {
    pub ja4: String,
    pub logged: Arc<LoggedHello>,
}

/// The facts known on this thread, and the buffers a lookup writes its key
/// into.
struct Known {
    facts: HashMap<Box<[u8]>, Arc<HelloFacts>, ClientKeyHasher>,
    key: Vec<u8>,
    extensions: Vec<u16>,
}

thread_local! {
    static KNOWN: RefCell<Known> = RefCell::new(Known {
        facts: HashMap::with_hasher(ClientKeyHasher::default()),
        key: Vec::new(),
        extensions: Vec::new(),
    });
}

/// The facts of `hello`, computed or looked up.
pub fn facts(hello: &ClientHelloInfo) -> Arc<HelloFacts> {
    KNOWN.with(|known| {
        let known = &mut *known.borrow_mut();
        write_key(hello, &mut known.key, &mut known.extensions);
        if let Some(facts) = known.facts.get(known.key.as_slice()) {
            return facts.clone();
        }
        let facts = Arc::new(HelloFacts {
            ja4: ja4(hello),
            logged: Arc::new(LoggedHello::new(details(hello))),
        });
        if known.facts.len() >= KEPT {
            known.facts.clear();
        }
        known
            .facts
            .insert(known.key.as_slice().into(), facts.clone());
        facts
    })
}

/// Writes `hello`'s key into `key` (see the module's doc); `extensions` is
/// room to sort them in.
fn write_key(hello: &ClientHelloInfo, key: &mut Vec<u8>, extensions: &mut Vec<u16>) {
    key.clear();
    key.extend_from_slice(&hello.record_version.to_ne_bytes());
    key.extend_from_slice(&hello.client_version.to_ne_bytes());
    write_values(key, &hello.supported_versions);
    write_values(key, &hello.cipher_suites);
    extensions.clear();
    extensions.extend(hello.extensions.iter().copied().map(ungreased_value));
    extensions.sort_unstable();
    write_values(key, extensions);
    write_values(key, &hello.groups);
    write_values(key, &hello.signature_algorithms);
    write_bytes(key, &hello.ec_point_formats);
    write_len(key, hello.alpn.len());
    for name in &hello.alpn {
        write_bytes(key, name.as_bytes());
    }
    key.push(u8::from(hello.sslv2));
    match hello.alpn_first_ends {
        Some(ends) => {
            key.push(1);
            key.extend_from_slice(&ends);
        }
        None => key.push(0),
    }
}

fn write_len(key: &mut Vec<u8>, len: usize) {
    key.extend_from_slice(&(len as u64).to_ne_bytes());
}

fn write_values(key: &mut Vec<u8>, values: &[u16]) {
    write_len(key, values.len());
    // Sized once and filled in place: a 2-byte `extend_from_slice` per
    // value was most of the key's cost.
    let start = key.len();
    key.resize(start + 2 * values.len(), 0);
    for (out, v) in key[start..].chunks_exact_mut(2).zip(values) {
        out.copy_from_slice(&ungreased_value(*v).to_ne_bytes());
    }
}

fn write_bytes(key: &mut Vec<u8>, bytes: &[u8]) {
    write_len(key, bytes.len());
    key.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tls::logged_hello::details;

    /// A Chrome-like hello: `grease` in every list, extensions in `order`.
    fn hello(grease: u16, order: &[usize], sni: bool, alpn: &[&str]) -> ClientHelloInfo {
        let extensions = [
            grease, 0, 23, 65281, 10, 11, 35, 16, 5, 13, 18, 51, 45, 43, 27, 17513,
        ];
        ClientHelloInfo {
            sni: sni.then(|| "portal.contoso.test".into()),
            record_version: 0x0301,
            client_version: 0x0303,
            supported_versions: vec![grease, 0x0304, 0x0303],
            cipher_suites: vec![grease, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c],
            extensions: order.iter().map(|&i| extensions[i]).collect(),
            alpn: alpn.iter().map(|a| a.to_string()).collect(),
            alpn_first_ends: alpn
                .first()
                .map(|a| a.as_bytes())
                .and_then(|a| Some([*a.first()?, *a.last()?])),
            groups: vec![grease, 0x001d, 0x0017, 0x0018],
            ec_point_formats: vec![0],
            signature_algorithms: vec![0x0403, 0x0804, 0x0401, 0x0503],
            sslv2: false,
        }
    }

    fn fresh(h: &ClientHelloInfo) -> (String, String) {
        (ja4(h), details(h).id().as_hex())
    }

    fn cached(h: &ClientHelloInfo) -> (String, String) {
        let f = facts(h);
        assert_eq!(f.logged.details, details(h));
        (f.ja4.clone(), f.logged.id.as_hex())
    }

    /// Every variation a client makes between connections (GREASE values,
    /// extension order) and every one that makes another hello (SNI or
    /// not, ALPN, one suite less): the looked-up facts are what computing
    /// them gives, and only the latter make new entries.
    #[test]
    fn looked_up_facts_are_the_computed_ones() {
        KNOWN.with(|k| k.borrow_mut().facts.clear());
        let identity: Vec<usize> = (0..16).collect();
        // Fixed permutations (a seeded shuffle, written out).
        let shuffled = [
            vec![0, 5, 3, 9, 1, 14, 7, 12, 2, 15, 8, 4, 11, 6, 13, 10],
            vec![0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
        ];
        let base = hello(0x0a0a, &identity, true, &["h2", "http/1.1"]);
        assert_eq!(cached(&base), fresh(&base));
        for (grease, order) in [(0x1a1a, &shuffled[0]), (0xfafa, &shuffled[1])] {
            let again = hello(grease, order, true, &["h2", "http/1.1"]);
            assert_eq!(cached(&again), fresh(&again));
            assert_eq!(cached(&again), fresh(&base));
        }
        assert_eq!(KNOWN.with(|k| k.borrow().facts.len()), 1);

        // Without SNI, as such a client sends it: no server_name extension.
        let mut no_sni = hello(0x0a0a, &identity, false, &["h2", "http/1.1"]);
        no_sni.extensions.retain(|&e| e != 0);
        let http11 = hello(0x0a0a, &identity, true, &["http/1.1"]);
        let no_alpn = hello(0x0a0a, &identity, true, &[]);
        let mut fewer = base.clone();
        fewer.cipher_suites.pop();
        for other in [&no_sni, &http11, &no_alpn, &fewer] {
            assert_eq!(cached(other), fresh(other));
            assert_ne!(cached(other), fresh(&base));
        }
        assert_eq!(KNOWN.with(|k| k.borrow().facts.len()), 5);
    }

    /// A flood of distinct hellos keeps at most `KEPT`, and every answer
    /// stays right.
    #[test]
    fn the_map_is_bounded() {
        KNOWN.with(|k| k.borrow_mut().facts.clear());
        let identity: Vec<usize> = (0..16).collect();
        for n in 0..(KEPT as u16 + 10) {
            let mut h = hello(0x0a0a, &identity, true, &["h2"]);
            h.cipher_suites.push(0x1000 + n);
            assert_eq!(cached(&h), fresh(&h));
            assert!(KNOWN.with(|k| k.borrow().facts.len()) <= KEPT);
        }
    }

    /// Values moved from one list to the next, or an ALPN name whose bytes
    /// as sent end differently (the details keep it with invalid UTF-8
    /// replaced): other hellos, other keys.
    #[test]
    fn hellos_that_differ_only_in_where_a_list_ends_are_apart() {
        KNOWN.with(|k| k.borrow_mut().facts.clear());
        let identity: Vec<usize> = (0..16).collect();
        let base = hello(0x0a0a, &identity, true, &["h2"]);
        let mut moved = base.clone();
        let last = moved.cipher_suites.pop().unwrap();
        moved.groups.insert(0, last);
        let mut raw_ends = base.clone();
        raw_ends.alpn_first_ends = Some([b'h', 0xff]);
        for h in [&base, &moved, &raw_ends] {
            assert_eq!(cached(h), fresh(h));
        }
        assert_ne!(cached(&moved), cached(&base));
        assert_eq!(
            cached(&raw_ends).1,
            cached(&base).1,
            "the same details, so the same id"
        );
        assert_ne!(cached(&raw_ends).0, cached(&base).0, "another JA4");
        assert_eq!(KNOWN.with(|k| k.borrow().facts.len()), 3);
    }
}
