//! What the handshake log keeps of a ClientHello for `snigate report
//! --against` (README, "Handshake log", `hello_id` and `hello`): the fields
//! the certificate choice and the rustls check read, written once per
//! distinct hello and named on every line by a short id.
//!
//! Plain data: the tls layer makes these from a parsed hello and turns them
//! back into one (`tls::logged_hello`). Read back from a log file they are
//! hostile input: [`HelloDetails::within_bounds`] says whether they are of
//! a size a real hello could have.

use std::collections::HashSet;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The most entries a list of [`HelloDetails`] read from a log may have: a
/// ClientHello of at most `MAX_CLIENT_HELLO` (16 KiB) bytes holds at most
/// half as many two-byte values.
pub const MAX_LIST: usize = 8 * 1024;

/// The longest ALPN protocol name kept (the wire allows 255 bytes).
pub const MAX_ALPN_NAME: usize = 255;

/// The GREASE value every GREASE entry (RFC 8701) is written as: clients
/// pick them at random per connection, so keeping the one sent would make
/// every connection of a browser a new hello. Where a GREASE value stood
/// (and that it stood there) is kept; which one it was decides nothing.
pub const GREASE: u16 = 0x0a0a;

/// A ClientHello's fields that decide what snigate does with it, except
/// the SNI (on every line as `sni`). The README's "Handshake log" names
/// each field; `u16` values are written as `"0x0303"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HelloDetails {
    /// The version in the first record header (`"0x0002"`: SSLv2 format).
    #[serde(with = "hex16")]
    pub record_version: u16,
    /// The hello's legacy_version.
    #[serde(with = "hex16")]
    pub client_version: u16,
    /// supported_versions, in order (empty: no extension).
    #[serde(with = "hex16_list")]
    pub versions: Vec<u16>,
    /// Cipher suites in order, signalling suites included.
    #[serde(with = "hex16_list")]
    pub suites: Vec<u16>,
    /// Extension types present, sorted (their order decides nothing, and
    /// browsers shuffle it per connection).
    #[serde(with = "hex16_list")]
    pub extensions: Vec<u16>,
    /// supported_groups, in order.
    #[serde(with = "hex16_list")]
    pub groups: Vec<u16>,
    /// signature_algorithms, in order.
    #[serde(with = "hex16_list")]
    pub signature_algorithms: Vec<u16>,
    /// ec_point_formats, as numbers.
    pub ec_point_formats: Vec<u8>,
    /// ALPN protocol names offered, in order.
    pub alpn: Vec<String>,
    /// The hello came in the SSLv2-compatible format.
    pub sslv2: bool,
}

/// A short name for a [`HelloDetails`]: 16 hex digits of the SHA-256 of
/// its fields, the same in every process and log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HelloId(pub u64);

impl HelloId {
    /// As the log writes it (`hello_id`).
    pub fn as_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// An id as the log writes it; `None` for anything else.
    pub fn parse(text: &str) -> Option<HelloId> {
        if text.len() != 16 {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(HelloId)
    }
}

impl std::fmt::Display for HelloId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl HelloDetails {
    /// Its [`HelloId`]: each field hashed with its length, so no two
    /// different details share an encoding.
    pub fn id(&self) -> HelloId {
        let mut h = Sha256::new();
        h.update(self.record_version.to_be_bytes());
        h.update(self.client_version.to_be_bytes());
        for list in [
            &self.versions,
            &self.suites,
            &self.extensions,
            &self.groups,
            &self.signature_algorithms,
        ] {
            h.update((list.len() as u64).to_be_bytes());
            list.iter().for_each(|v| h.update(v.to_be_bytes()));
        }
        h.update((self.ec_point_formats.len() as u64).to_be_bytes());
        h.update(&self.ec_point_formats);
        h.update((self.alpn.len() as u64).to_be_bytes());
        for name in &self.alpn {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
        }
        h.update([u8::from(self.sslv2)]);
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        HelloId(u64::from_be_bytes(first))
    }

    /// Whether every list has a size a ClientHello could hold.
    pub fn within_bounds(&self) -> bool {
        let lists = [
            self.versions.len(),
            self.suites.len(),
            self.extensions.len(),
            self.groups.len(),
            self.signature_algorithms.len(),
            self.ec_point_formats.len(),
            self.alpn.len(),
        ];
        lists.iter().all(|n| *n <= MAX_LIST)
            && self.alpn.iter().all(|a| a.len() <= MAX_ALPN_NAME * 3)
    }

    /// How many values it holds: what it costs to keep.
    pub fn size(&self) -> usize {
        self.versions.len()
            + self.suites.len()
            + self.extensions.len()
            + self.groups.len()
            + self.signature_algorithms.len()
            + self.ec_point_formats.len()
            + self.alpn.iter().map(|a| 1 + a.len() / 2).sum::<usize>()
    }
}

/// The hellos whose details a handshake log has written since it was
/// opened. Bounded: when [`HellosWritten::CAPACITY`] ids are held the set
/// is cleared, and each hello's details are written again on its next line.
#[derive(Debug, Default)]
pub struct HellosWritten {
    ids: Mutex<HashSet<HelloId>>,
}

impl HellosWritten {
    /// The most ids held.
    pub const CAPACITY: usize = 4096;

    /// `true` the first time `id` is seen (since the set was last cleared):
    /// the line is to carry the details.
    pub fn first(&self, id: HelloId) -> bool {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.contains(&id) {
            return false;
        }
        if ids.len() >= Self::CAPACITY {
            ids.clear();
        }
        ids.insert(id)
    }
}

/// A `u16` as `"0x0303"`.
mod hex16 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#06x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        super::parse_hex16(&text)
            .ok_or_else(|| D::Error::custom("expected \"0x\" and 4 hex digits"))
    }
}

/// A list of `u16` as `["0x1301", ...]`.
mod hex16_list {
    use serde::{de::Error, ser::SerializeSeq, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u16], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&format!("{x:#06x}"))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
        let texts = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        texts
            .iter()
            .map(|t| super::parse_hex16(t))
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| D::Error::custom("expected \"0x\" and 4 hex digits"))
    }
}

fn parse_hex16(text: &str) -> Option<u16> {
    let digits = text.strip_prefix("0x")?;
    if digits.len() != 4 {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> HelloDetails {
        HelloDetails {
            record_version: 0x0301,
            client_version: 0x0303,
            versions: vec![GREASE, 0x0304, 0x0303],
            suites: vec![0x1301, 0xc02b],
            extensions: vec![0, 10, 13, 43],
            groups: vec![0x001d],
            signature_algorithms: vec![0x0403],
            ec_point_formats: vec![0],
            alpn: vec!["h2".into()],
            sslv2: false,
        }
    }

    #[test]
    fn json_round_trip_and_hex_form() {
        let d = details();
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.contains(r#""versions":["0x0a0a","0x0304","0x0303"]"#),
            "{json}"
        );
        let back: HelloDetails = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.id(), d.id());
        assert_eq!(HelloId::parse(&d.id().as_hex()), Some(d.id()));
    }

    #[test]
    fn ids_differ_when_a_field_does() {
        let d = details();
        let mut other = d.clone();
        other.suites.swap(0, 1);
        assert_ne!(d.id(), other.id());
        let mut moved = d.clone();
        // The same values in another list.
        moved.groups = vec![];
        moved.signature_algorithms = vec![0x001d, 0x0403];
        assert_ne!(d.id(), moved.id());
    }

    #[test]
    fn bad_hex_is_refused() {
        for bad in ["\"303\"", "\"0x303\"", "\"0xzzzz\"", "\"0x030303\"", "771"] {
            let json = format!(
                r#"{{"record_version":{bad},"client_version":"0x0303","versions":[],"suites":[],"extensions":[],"groups":[],"signature_algorithms":[],"ec_point_formats":[],"alpn":[],"sslv2":false}}"#
            );
            assert!(
                serde_json::from_str::<HelloDetails>(&json).is_err(),
                "{bad}"
            );
        }
        assert_eq!(HelloId::parse("12"), None);
        assert_eq!(HelloId::parse("zzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn the_written_set_is_bounded() {
        let seen = HellosWritten::default();
        assert!(seen.first(HelloId(1)));
        assert!(!seen.first(HelloId(1)));
        for i in 2..=HellosWritten::CAPACITY as u64 {
            assert!(seen.first(HelloId(i)));
        }
        // Full: the next new id clears it, so id 1 is written again.
        assert!(seen.first(HelloId(0)));
        assert!(seen.first(HelloId(1)));
    }
}
