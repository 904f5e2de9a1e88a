//! ClientHello bytes: built field by field, or read from the captures in
//! tests/data/hellos.

use std::path::Path;

/// A ClientHello record: `version` as legacy_version, these suites, an SNI
/// when given, supported_groups P-256/P-384, uncompressed points, and a
/// signature_algorithms extension when `sigalgs` is given.
pub fn client_hello(
    version: u16,
    suites: &[u16],
    sni: Option<&str>,
    sigalgs: Option<&[u16]>,
) -> Vec<u8> {
    fn u16s(v: &[u16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }
    fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut d = Vec::new();
        d.extend(((name.len() + 3) as u16).to_be_bytes());
        d.push(0);
        d.extend((name.len() as u16).to_be_bytes());
        d.extend(name.as_bytes());
        ext(&mut exts, 0x0000, &d);
    }
    let groups = u16s(&[0x0017, 0x0018]);
    let mut d = (groups.len() as u16).to_be_bytes().to_vec();
    d.extend(groups);
    ext(&mut exts, 0x000a, &d);
    ext(&mut exts, 0x000b, &[1, 0]);
    if let Some(algs) = sigalgs {
        let a = u16s(algs);
        let mut d = (a.len() as u16).to_be_bytes().to_vec();
        d.extend(a);
        ext(&mut exts, 0x000d, &d);
    }
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x5a; 32]);
    body.push(0);
    let s = u16s(suites);
    body.extend((s.len() as u16).to_be_bytes());
    body.extend(s);
    body.extend([1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// The bytes of a captured ClientHello in `tests/data/hellos` (hex text).
pub fn capture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hellos")
        .join(name);
    let hex = std::fs::read_to_string(&path).expect("capture");
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every capture in tests/data/hellos.
pub const CAPTURES: [&str; 7] = [
    "win7_ie11_schannel_tls12.hex",
    "win10_ie11_schannel_tls12.hex",
    "win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex",
    "yahooslurp_jun2014_openssl_tls12_nosni.hex",
    "xp_ie8_schannel_tls10_nosni.hex",
    "android237_tls10_nosni.hex",
    "java6u45_sslv2hello_nosni.hex",
];
