//! Key exchange group names (IANA TLS Supported Groups), one table for the
//! handshake log, the metrics and `snigate explain`.

/// The name of a supported group (formerly "elliptic curve") code point,
/// `None` for one without a name.
pub fn name(v: u16) -> Option<&'static str> {
    const RFC4492: [&str; 25] = [
        "sect163k1",
        "sect163r1",
        "sect163r2",
        "sect193r1",
        "sect193r2",
        "sect233k1",
        "sect233r1",
        "sect239k1",
        "sect283k1",
        "sect283r1",
        "sect409k1",
        "sect409r1",
        "sect571k1",
        "sect571r1",
        "secp160k1",
        "secp160r1",
        "secp160r2",
        "secp192k1",
        "secp192r1",
        "secp224k1",
        "secp224r1",
        "secp256k1",
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ];
    if (1..=25).contains(&v) {
        return RFC4492.get(usize::from(v - 1)).copied();
    }
    Some(match v {
        0x001a => "brainpoolP256r1",
        0x001b => "brainpoolP384r1",
        0x001c => "brainpoolP512r1",
        0x001d => "X25519",
        0x001e => "X448",
        0x001f => "brainpoolP256r1tls13",
        0x0020 => "brainpoolP384r1tls13",
        0x0021 => "brainpoolP512r1tls13",
        0x0100 => "ffdhe2048",
        0x0101 => "ffdhe3072",
        0x0102 => "ffdhe4096",
        0x0103 => "ffdhe6144",
        0x0104 => "ffdhe8192",
        0x0200 => "MLKEM512",
        0x0201 => "MLKEM768",
        0x0202 => "MLKEM1024",
        0x11eb => "SecP256r1MLKEM768",
        0x11ec => "X25519MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        0x6399 => "X25519Kyber768Draft00",
        0xff01 => "arbitrary_explicit_prime_curves",
        0xff02 => "arbitrary_explicit_char2_curves",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn names() {
        assert_eq!(name(23), Some("secp256r1"));
        assert_eq!(name(1), Some("sect163k1"));
        assert_eq!(name(0x1d), Some("X25519"));
        assert_eq!(name(0x11ec), Some("X25519MLKEM768"));
        assert_eq!(name(0), None);
    }
}
