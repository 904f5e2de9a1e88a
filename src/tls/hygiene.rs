//! Certificate hygiene: what an operator should fix before clients notice.
//!
//! [`inspect`] looks at the loaded certificates and the configuration and returns a
//! [`Finding`] for each of:
//!
//! - a certificate (the leaf, or another certificate of its chain file) that expires
//!   within [`EXPIRY_WARNING_DAYS`] days, has expired, or is not valid yet;
//! - a private key file (or a pfx, or its password file) that every user of the
//!   machine can read (Unix mode `o+r`, and
//!   every folder above it open to others): group-readable keys (`0640 root:ssl-cert`,
//!   the Debian way) are fine;
//! - a chain file that does not go leaf, its issuer, that issuer's issuer, ...: every
//!   certificate must be followed by the one that signed it (same name *and* a
//!   signature that verifies with its key), with nothing unrelated or repeated;
//! - a listener's fallback certificate that does not cover a host routed on that
//!   listener, so a client without SNI asking for that host sees a name warning.
//!
//! It is a pure function of its inputs apart from reading the key files' metadata,
//! and cheap (a few signature verifications per certificate), so the runtime can run
//! it at start, at every reload and daily; [`log`] writes the findings as warnings.
//! `snigate check` prints them as `warning: ...` lines.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::certificate::X509Certificate;

use crate::config::{ListenerMode, Settings};
use crate::tls::certs::LoadedCertificate;

/// A certificate that expires within this many days gets a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

const DAY: i64 = 86_400;

/// What a [`Finding`] is about; `as_str` is the stable name used in logs and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Valid now, but expires within [`EXPIRY_WARNING_DAYS`] days.
    Expiring,
    /// Past its notAfter: clients refuse it.
    Expired,
    /// Before its notBefore: clients refuse it.
    NotYetValid,
    /// The private key file (a pfx, a pfx password file) is readable by every
    /// user of the machine.
    KeyReadable,
    /// The chain file is not leaf, issuer, issuer's issuer, ... (or holds a
    /// certificate that does not belong to the chain).
    ChainOrder,
    /// A listener's fallback certificate does not cover a host routed on it.
    FallbackUncovered,
}

impl Kind {
    /// "expiring", "expired", "not_yet_valid", "key_readable", "chain_order",
    /// "fallback_uncovered".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Expiring => "expiring",
            Kind::Expired => "expired",
            Kind::NotYetValid => "not_yet_valid",
            Kind::KeyReadable => "key_readable",
            Kind::ChainOrder => "chain_order",
            Kind::FallbackUncovered => "fallback_uncovered",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hygiene problem, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of problem (stable; see [`Kind::as_str`]).
    pub kind: Kind,
    /// The `[[certificate]]` name it concerns (for `fallback_uncovered`: the fallback).
    pub certificate: Option<String>,
    /// The `[[listener]]` name it concerns (only `fallback_uncovered`).
    pub listener: Option<String>,
    /// The problem and the fix in plain words; names the certificate, file, listener
    /// or host involved, so it reads on its own.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every hygiene problem of `loaded` (the certificates of `settings`, as loaded) at
/// `now`, in a stable order: per certificate (declaration order) expiry, key file,
/// chain order; then per listener the fallback hosts not covered.
///
/// Reads the key files' metadata (not their content); nothing else touches the
/// system. Key and chain paths come from `settings`; a loaded certificate that
/// `settings` does not declare gets only the checks that need no file.
pub fn inspect(settings: &Settings, loaded: &[LoadedCertificate], now: SystemTime) -> Vec<Finding> {
    let algorithms = crate::tls::crypto_provider().signature_verification_algorithms;
    let now = unix(now);
    let mut findings = Vec::new();
    let by_name: HashMap<&str, &crate::config::CertificateSettings> = settings
        .certificates
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    for cert in loaded {
        let files = by_name.get(cert.name.as_str());
        let chain_file = files.map(|f| f.source.chain_file().display().to_string());
        let chain_file = chain_file.as_deref().unwrap_or("its chain file");
        let chain = &cert.certified_key.cert;
        let parsed: Vec<Option<X509Certificate<'_>>> = chain
            .iter()
            .map(|der| {
                x509_parser::parse_x509_certificate(der.as_ref())
                    .ok()
                    .map(|(_, c)| c)
            })
            .collect();

        findings.extend(validity(
            &cert.name,
            None,
            unix(cert.not_before),
            unix(cert.not_after),
            now,
        ));
        for (i, c) in parsed.iter().enumerate().skip(1) {
            let Some(c) = c else { continue };
            let place = ChainPlace {
                file: chain_file,
                position: i + 1,
                subject: c.subject().to_string(),
                self_signed: c.subject().as_raw() == c.issuer().as_raw(),
            };
            findings.extend(validity(
                &cert.name,
                Some(&place),
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
                now,
            ));
        }

        for (what, path) in files.iter().flat_map(|f| f.source.secret_files()) {
            if let Some(mode) = key_exposed(path) {
                findings.push(key_finding(&cert.name, what, path, mode));
            }
        }

        if let Some(message) = chain_order(chain, &parsed, algorithms) {
            findings.push(Finding {
                kind: Kind::ChainOrder,
                certificate: Some(cert.name.clone()),
                listener: None,
                message: format!(
                    "certificate \"{}\": chain file {chain_file} is out of order: {message}",
                    cert.name
                ),
            });
        }
    }
    findings.extend(fallback_uncovered(settings, loaded));
    findings
}

/// Writes each finding as a `tracing` warning with fields `kind`, `certificate` and
/// `listener` (the latter two when set) and the message.
pub fn log(findings: &[Finding]) {
    for f in findings {
        tracing::warn!(
            kind = f.kind.as_str(),
            certificate = f.certificate.as_deref(),
            listener = f.listener.as_deref(),
            "{}",
            f.message
        );
    }
}

/// The hosts routed on each https listener (routes with no `listeners`, or naming
/// it) that its fallback certificate does not cover; wildcard route hosts are
/// skipped (no single name stands for them). Listeners with `strict_sni` are skipped:
/// they refuse clients without SNI instead of serving the fallback.
pub fn fallback_uncovered(settings: &Settings, loaded: &[LoadedCertificate]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for l in &settings.listeners {
        if l.mode != ListenerMode::Https || l.strict_sni {
            continue;
        }
        let Some(fallback) = l
            .fallback_certificate
            .as_deref()
            .and_then(|n| loaded.iter().find(|c| c.name == n))
        else {
            continue;
        };
        let mut seen: HashSet<String> = HashSet::new();
        let hosts = settings
            .routes
            .iter()
            .filter(|r| r.applies_to(&l.name))
            .flat_map(|r| r.hosts.iter());
        let mut more: Vec<&str> = Vec::new();
        for h in hosts {
            let key = crate::config::host_name(h);
            if h.starts_with("*.") || fallback.covers(h) || !seen.insert(key) {
                continue;
            }
            if seen.len() > UNCOVERED_LISTED {
                more.push(h);
                continue;
            }
            findings.push(Finding {
                kind: Kind::FallbackUncovered,
                certificate: Some(fallback.name.clone()),
                listener: Some(l.name.clone()),
                message: format!(
                    "listener \"{}\": fallback certificate \"{}\" does not cover {h}; a client \
                     without SNI asking for it sees a name warning: add {h} to that \
                     certificate, or serve {h} on its own listener (IP:port) whose fallback \
                     covers it",
                    l.name, fallback.name
                ),
            });
        }
        if !more.is_empty() {
            findings.push(Finding {
                kind: Kind::FallbackUncovered,
                certificate: Some(fallback.name.clone()),
                listener: Some(l.name.clone()),
                message: format!(
                    "listener \"{}\": fallback certificate \"{}\" does not cover {} more routed \
                     hosts either ({}{}): clients without SNI asking for them see a name warning",
                    l.name,
                    fallback.name,
                    more.len(),
                    more.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                    if more.len() > 3 { ", ..." } else { "" }
                ),
            });
        }
    }
    findings
}

/// Routed hosts a fallback does not cover that get a finding each, per
/// listener; the rest are counted in one more. A hosting farm routes
/// thousands of names: a warning per name at every start, reload and daily
/// inspection would bury the log and `/healthz`.
pub const UNCOVERED_LISTED: usize = 10;

// ---------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------

/// A certificate of a chain file other than the leaf.
struct ChainPlace<'a> {
    file: &'a str,
    /// 1-based.
    position: usize,
    subject: String,
    self_signed: bool,
}

/// The expiry finding of one certificate, if any: the leaf (`place` None) or another
/// certificate of the chain file. Times are Unix seconds.
fn validity(
    name: &str,
    place: Option<&ChainPlace<'_>>,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Option<Finding> {
    let what = match place {
        None => format!("certificate \"{name}\""),
        Some(p) => format!(
            "certificate \"{name}\": certificate {} of chain file {} ({})",
            p.position, p.file, p.subject
        ),
    };
    // What to do, by which certificate it is.
    let fix = match place {
        None => "renew it, then reload snigate (SIGHUP)".to_string(),
        Some(p) if p.self_signed => {
            "it is a root, which clients take from their own trust store: remove it from \
             the chain file and reload snigate (SIGHUP)"
                .to_string()
        }
        Some(_) => "replace it with the current intermediate from the CA (the one that \
                    issued the certificate before it), then reload snigate (SIGHUP)"
            .to_string(),
    };
    let (kind, message) = if now > not_after {
        let days = now.saturating_sub(not_after) / DAY;
        let ago = match days {
            0 => "less than a day ago".to_string(),
            1 => "1 day ago".to_string(),
            d => format!("{d} days ago"),
        };
        (
            Kind::Expired,
            format!(
                "{what} expired {ago}, on {}; clients refuse it: {fix}",
                date(not_after)
            ),
        )
    } else if now < not_before {
        let days = not_before.saturating_sub(now).saturating_add(DAY - 1) / DAY; // rounded up
        (
            Kind::NotYetValid,
            format!(
                "{what} is not valid until {} (in {}); clients refuse it until then: check \
                 this machine's clock, or serve the previous certificate until that date",
                date(not_before),
                plural_days(days)
            ),
        )
    } else if not_after.saturating_sub(now) <= EXPIRY_WARNING_DAYS * DAY {
        let days = not_after.saturating_sub(now) / DAY;
        let left = match days {
            0 => "in less than a day".to_string(),
            d => format!("in {}", plural_days(d)),
        };
        (
            Kind::Expiring,
            format!("{what} expires {left}, on {}: {fix}", date(not_after)),
        )
    } else {
        return None;
    };
    Some(Finding {
        kind,
        certificate: Some(name.to_string()),
        listener: None,
        message,
    })
}

fn plural_days(d: i64) -> String {
    if d == 1 {
        "1 day".to_string()
    } else {
        format!("{d} days")
    }
}

/// Unix seconds, negative before 1970, saturating.
fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// "2026-12-08 12:00:00 UTC".
fn date(ts: i64) -> String {
    let t = if ts >= 0 {
        UNIX_EPOCH.checked_add(std::time::Duration::from_secs(ts.unsigned_abs()))
    } else {
        None
    };
    match t {
        Some(t) => {
            let s = humantime::format_rfc3339_seconds(t).to_string();
            s.replacen('T', " ", 1).replace('Z', " UTC")
        }
        None => format!("Unix time {ts}"),
    }
}

// ---------------------------------------------------------------------------
// Key file permissions
// ---------------------------------------------------------------------------

/// The key file's mode when every user of the machine can read it: the file is
/// `o+r` and every folder above it `o+x` (a key in a `0700` folder is safe whatever
/// its own mode). None when it is not exposed, or on error (the file was just read
/// successfully; a race is not worth a warning), or off Unix.
#[cfg(unix)]
fn key_exposed(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 == 0 {
        return None;
    }
    let real = std::fs::canonicalize(path).ok()?;
    for dir in real.ancestors().skip(1) {
        let dir_mode = std::fs::metadata(dir).ok()?.permissions().mode();
        if dir_mode & 0o001 == 0 {
            return None;
        }
    }
    Some(mode & 0o7777)
}

#[cfg(not(unix))]
fn key_exposed(_path: &Path) -> Option<u32> {
    None
}

/// `what` is the kind of file: "key file", "pfx file", "pfx password file".
fn key_finding(name: &str, what: &str, path: &Path, mode: u32) -> Finding {
    let file = shell_word(&path.display().to_string());
    let access = if mode & 0o002 != 0 {
        "readable and writable"
    } else {
        "readable"
    };
    Finding {
        kind: Kind::KeyReadable,
        certificate: Some(name.to_string()),
        listener: None,
        message: format!(
            "certificate \"{name}\": {what} {file} is {access} by every user of this \
             machine (mode {mode:04o}): chmod 600 {file} (or chmod 640 with a group that \
             only snigate's user is in)"
        ),
    }
}

/// `s` quoted for a shell command line when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------
// Chain order
// ---------------------------------------------------------------------------

/// Whether one certificate issued another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// The names match and the signature verifies with the issuer's key.
    Verified,
    /// The names match; the signature algorithm is one the provider does not verify
    /// (SHA-1, say), so the names have to do.
    NamesOnly,
    /// Different names, or a signature that does not verify.
    No,
}

impl Link {
    fn holds(self) -> bool {
        self != Link::No
    }
}

/// Whether `issuer` issued `child`: `child`'s issuer name equals `issuer`'s subject
/// (byte for byte, as webpki compares them) and `child`'s signature verifies with
/// `issuer`'s public key using one of `algorithms`.
fn issued_by(
    child: (&CertificateDer<'_>, &X509Certificate<'_>),
    issuer: (&CertificateDer<'_>, &X509Certificate<'_>),
    algorithms: WebPkiSupportedAlgorithms,
) -> Link {
    if child.1.issuer().as_raw() != issuer.1.subject().as_raw() {
        return Link::No;
    }
    let (Some(signed), Some(spki)) = (
        SignedParts::of(child.0.as_ref()),
        Spki::of(issuer.1.public_key().raw),
    ) else {
        return Link::No;
    };
    let mut candidates = algorithms
        .all
        .iter()
        .filter(|a| {
            a.signature_alg_id().as_ref() == signed.algorithm
                && a.public_key_alg_id().as_ref() == spki.algorithm
        })
        .peekable();
    if candidates.peek().is_none() {
        // No algorithm for this pair. When the signature algorithm is known and
        // needs another kind of key (an RSA signature, an ECDSA key), this issuer
        // did not make it; otherwise (SHA-1, an unusual curve) the names have to do.
        let issuer_family = key_family(spki.algorithm);
        let mut families = algorithms
            .all
            .iter()
            .filter(|a| a.signature_alg_id().as_ref() == signed.algorithm)
            .map(|a| key_family(a.public_key_alg_id().as_ref()).to_vec())
            .peekable();
        if families.peek().is_some() && !families.any(|f| f == issuer_family) {
            return Link::No;
        }
        return Link::NamesOnly;
    }
    if candidates.any(|a| {
        a.verify_signature(spki.key, signed.tbs, signed.signature)
            .is_ok()
    }) {
        Link::Verified
    } else {
        Link::No
    }
}

/// The kind of key of a public key AlgorithmIdentifier (its contents): the
/// algorithm OID element, without parameters such as the curve.
fn key_family(algorithm: &[u8]) -> &[u8] {
    der_element(algorithm, 0x06).map_or(algorithm, |e| e.whole)
}

/// What is wrong with the order of `chain` (leaf first), in words, or None when each
/// certificate is followed by its issuer. `parsed` is `chain` parsed (None where it
/// does not parse; the loader already refuses those).
fn chain_order(
    chain: &[CertificateDer<'_>],
    parsed: &[Option<X509Certificate<'_>>],
    algorithms: WebPkiSupportedAlgorithms,
) -> Option<String> {
    let n = chain.len();
    if n < 2 || parsed.iter().any(Option::is_none) {
        return None;
    }
    let cert = |i: usize| (&chain[i], parsed[i].as_ref().expect("all parsed"));
    let link = |child: usize, issuer: usize| issued_by(cert(child), cert(issuer), algorithms);
    let subject = |i: usize| {
        parsed[i]
            .as_ref()
            .expect("all parsed")
            .subject()
            .to_string()
    };
    let label = |i: usize| format!("{} ({})", i + 1, subject(i));

    // Repeats of an earlier certificate.
    let duplicate_of: Vec<Option<usize>> = (0..n)
        .map(|i| (0..i).find(|&j| chain[j].as_ref() == chain[i].as_ref()))
        .collect();
    let broken: Vec<usize> = (0..n - 1)
        .filter(|&i| duplicate_of[i + 1].is_some() || !link(i, i + 1).holds())
        .collect();
    if broken.is_empty() {
        return None;
    }

    // The order that verifies: from the leaf, each certificate's issuer among the
    // others (a verified one first), until a self-signed root or no issuer.
    let mut path = vec![0usize];
    loop {
        let cur = *path.last().expect("not empty");
        if link(cur, cur).holds() {
            break; // self-signed: a root ends the chain
        }
        let unused = |j: &usize| !path.contains(j) && duplicate_of[*j].is_none();
        let next = (0..n)
            .filter(unused)
            .find(|&j| link(cur, j) == Link::Verified)
            .or_else(|| (0..n).filter(unused).find(|&j| link(cur, j).holds()));
        match next {
            Some(j) => path.push(j),
            None => break,
        }
    }

    let mut parts = Vec::new();
    // Each broken link: the first with names, the others by position.
    let links: Vec<String> = broken
        .iter()
        .enumerate()
        .map(|(k, &i)| match duplicate_of[i + 1] {
            Some(j) => format!("certificate {} repeats certificate {}", i + 2, j + 1),
            None if link(i, i).holds() => format!(
                "certificate {} is a self-signed root, so nothing should follow it",
                if k == 0 {
                    label(i)
                } else {
                    (i + 1).to_string()
                }
            ),
            None if k == 0 => format!(
                "certificate {} did not issue certificate {} (which was issued by {})",
                label(i + 1),
                label(i),
                parsed[i].as_ref().expect("all parsed").issuer()
            ),
            None => format!("certificate {} did not issue certificate {}", i + 2, i + 1),
        })
        .collect();
    parts.push(links.join(", "));
    let on_path_in_order = path.iter().enumerate().all(|(k, &i)| k == i);
    if path.len() > 1 && !on_path_in_order {
        let order: Vec<String> = path.iter().map(|i| (i + 1).to_string()).collect();
        parts.push(format!(
            "put each issuer right after the certificate it signed: the order that \
             verifies is {}",
            order.join(", ")
        ));
    }
    let repeats: Vec<String> = (0..n)
        .filter(|&i| duplicate_of[i].is_some())
        .map(|i| (i + 1).to_string())
        .collect();
    if !repeats.is_empty() {
        parts.push(format!(
            "remove the repeated certificate{} {}",
            if repeats.len() == 1 { "" } else { "s" },
            repeats.join(", ")
        ));
    }
    let strays: Vec<String> = (0..n)
        .filter(|i| !path.contains(i) && duplicate_of[*i].is_none())
        .map(label)
        .collect();
    if !strays.is_empty() {
        parts.push(format!(
            "remove {} {}: not in the chain from the server certificate",
            if strays.len() == 1 {
                "certificate"
            } else {
                "certificates"
            },
            strays.join(", ")
        ));
        let last = *path.last().expect("not empty");
        if !link(last, last).holds() {
            let c = parsed[last].as_ref().expect("all parsed");
            parts.push(format!(
                "the issuer of certificate {} ({}) is not in the file; add it if it is an \
                 intermediate",
                last + 1,
                c.issuer()
            ));
        }
    }
    Some(parts.join("; "))
}

/// The signed parts of a DER certificate: `SEQUENCE { tbs, algorithm, BIT STRING }`.
struct SignedParts<'a> {
    /// The whole `tbsCertificate` element (what is signed).
    tbs: &'a [u8],
    /// The signature AlgorithmIdentifier's contents (without its SEQUENCE header),
    /// as [`rustls_pki_types::AlgorithmIdentifier`] holds them.
    algorithm: &'a [u8],
    signature: &'a [u8],
}

impl<'a> SignedParts<'a> {
    fn of(der: &'a [u8]) -> Option<Self> {
        let outer = der_element(der, 0x30)?.contents;
        let tbs = der_element(outer, 0x30)?;
        let algorithm = der_element(tbs.rest, 0x30)?;
        let signature = bit_string(der_element(algorithm.rest, 0x03)?.contents)?;
        Some(SignedParts {
            tbs: tbs.whole,
            algorithm: algorithm.contents,
            signature,
        })
    }
}

/// A SubjectPublicKeyInfo: `SEQUENCE { algorithm, BIT STRING }`.
struct Spki<'a> {
    /// The AlgorithmIdentifier's contents.
    algorithm: &'a [u8],
    /// The subjectPublicKey bits.
    key: &'a [u8],
}

impl<'a> Spki<'a> {
    fn of(der: &'a [u8]) -> Option<Self> {
        let outer = der_element(der, 0x30)?.contents;
        let algorithm = der_element(outer, 0x30)?;
        let key = bit_string(der_element(algorithm.rest, 0x03)?.contents)?;
        Some(Spki {
            algorithm: algorithm.contents,
            key,
        })
    }
}

/// One DER element.
struct Element<'a> {
    /// Header and contents.
    whole: &'a [u8],
    contents: &'a [u8],
    /// What follows the element.
    rest: &'a [u8],
}

/// The DER element at the start of `input` if its tag is `tag`.
fn der_element(input: &[u8], tag: u8) -> Option<Element<'_>> {
    let (&t, after_tag) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut body) = after_tag.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || body.len() < count {
            return None;
        }
        let len = body[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        body = &body[count..];
        len
    };
    if body.len() < len {
        return None;
    }
    let header = input.len() - body.len();
    Some(Element {
        whole: &input[..header + len],
        contents: &body[..len],
        rest: &body[len..],
    })
}

/// The bits of a BIT STRING's contents with no unused bits.
fn bit_string(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    };
    use rustls::sign::CertifiedKey;
    use rustls_pki_types::PrivateKeyDer;

    use crate::tls::certs::KeyKind;

    fn algorithms() -> WebPkiSupportedAlgorithms {
        crate::tls::crypto_provider().signature_verification_algorithms
    }

    struct Ca {
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn params(cn: &str, ca: bool) -> CertificateParams {
        let names = if ca { vec![] } else { vec![cn.to_string()] };
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p
    }

    fn root(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let p = params(cn, true);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    fn intermediate(cn: &str, by: &Ca) -> Ca {
        let key = KeyPair::generate().unwrap();
        let p = params(cn, true);
        let cert = p.signed_by(&key, &by.issuer).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(host: &str, by: &Ca) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let cert = params(host, false).signed_by(&key, &by.issuer).unwrap();
        (cert.der().clone(), key)
    }

    fn parse<'a>(d: &'a CertificateDer<'_>) -> X509Certificate<'a> {
        x509_parser::parse_x509_certificate(d.as_ref()).unwrap().1
    }

    fn order(chain: &[CertificateDer<'static>]) -> Option<String> {
        let parsed: Vec<_> = chain
            .iter()
            .map(|d| {
                x509_parser::parse_x509_certificate(d.as_ref())
                    .ok()
                    .map(|(_, c)| c)
            })
            .collect();
        chain_order(chain, &parsed, algorithms())
    }

    #[test]
    fn a_chain_in_order_is_fine_with_or_without_its_root() {
        let ca = root("Root");
        let int = intermediate("Int", &ca);
        let (l, _) = leaf("a.test", &int);
        assert_eq!(order(std::slice::from_ref(&l)), None);
        assert_eq!(order(&[l.clone(), int.der.clone()]), None);
        assert_eq!(order(&[l, int.der.clone(), ca.der.clone()]), None);
    }

    #[test]
    fn reversed_intermediates_are_reported_with_the_order_that_verifies() {
        let ca = root("Root");
        let i1 = intermediate("Int One", &ca);
        let i2 = intermediate("Int Two", &i1);
        let (l, _) = leaf("a.test", &i2);
        let m = order(&[l, i1.der.clone(), i2.der.clone()]).expect("out of order");
        assert!(
            m.contains("certificate 2 (CN=Int One) did not issue certificate 1 (CN=a.test)"),
            "{m}"
        );
        assert!(m.contains("the order that verifies is 1, 3, 2"), "{m}");
        assert!(!m.contains("remove"), "{m}");
    }

    #[test]
    fn an_unrelated_certificate_is_named_for_removal() {
        let ca = root("Root");
        let other = root("Other Root");
        let int = intermediate("Int", &ca);
        let (l, _) = leaf("a.test", &int);
        let m = order(&[l, int.der.clone(), other.der.clone()]).expect("stray");
        assert!(
            m.contains("certificate 3 (CN=Other Root) did not issue certificate 2"),
            "{m}"
        );
        assert!(m.contains("remove certificate 3 (CN=Other Root)"), "{m}");
        assert!(!m.contains("order that verifies"), "{m}");
    }

    #[test]
    fn same_name_but_another_key_is_not_the_issuer() {
        // An impostor with the intermediate's name: names match, signature does not.
        let ca = root("Root");
        let int = intermediate("Int", &ca);
        let impostor = intermediate("Int", &ca);
        let (l, _) = leaf("a.test", &int);
        let m = order(&[l.clone(), impostor.der.clone()]).expect("impostor");
        assert!(
            m.contains("certificate 2 (CN=Int) did not issue certificate 1"),
            "{m}"
        );
        assert!(
            m.contains("the issuer of certificate 1 (CN=Int) is not in the file"),
            "{m}"
        );
        assert_eq!(order(&[l, int.der.clone()]), None);
    }

    #[test]
    fn a_repeated_certificate_is_reported() {
        let ca = root("Root");
        let int = intermediate("Int", &ca);
        let (l, _) = leaf("a.test", &int);
        let m = order(&[l, int.der.clone(), int.der.clone()]).expect("repeat");
        assert!(m.contains("certificate 3 repeats certificate 2"), "{m}");
        assert!(m.contains("remove the repeated certificate 3"), "{m}");
    }

    #[test]
    fn signatures_are_verified_for_each_key_type() {
        let algs: [&'static rcgen::SignatureAlgorithm; 4] = [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_RSA_SHA256,
            &rcgen::PKCS_ED25519,
        ];
        for alg in algs {
            let key = if alg == &rcgen::PKCS_RSA_SHA256 {
                KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048).unwrap()
            } else {
                KeyPair::generate_for(alg).unwrap()
            };
            let p = params("Root", true);
            let root_der = p.self_signed(&key).unwrap().der().clone();
            let ca = Ca {
                der: root_der,
                issuer: Issuer::new(p, key),
            };
            let (l, _) = leaf("a.test", &ca);
            let (lp, cp) = (parse(&l), parse(&ca.der));
            assert_eq!(
                issued_by((&l, &lp), (&ca.der, &cp), algorithms()),
                Link::Verified,
                "{alg:?}"
            );
            assert_eq!(
                issued_by((&ca.der, &cp), (&ca.der, &cp), algorithms()),
                Link::Verified,
                "{alg:?} self-signed"
            );
            let other = root("Root");
            let op = parse(&other.der);
            assert_eq!(
                issued_by((&l, &lp), (&other.der, &op), algorithms()),
                Link::No,
                "{alg:?} other key"
            );
        }
    }

    #[test]
    fn der_reader_refuses_truncated_input() {
        let ca = root("Root");
        let der = ca.der.as_ref();
        assert!(SignedParts::of(der).is_some());
        for cut in [0, 1, 2, 5, der.len() / 2, der.len() - 1] {
            assert!(SignedParts::of(&der[..cut]).is_none(), "cut at {cut}");
        }
        assert!(der_element(&[0x30, 0x85, 1, 1, 1, 1, 1], 0x30).is_none());
    }

    fn loaded(
        name: &str,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> LoadedCertificate {
        let ca = root("Root");
        let (der, key) = leaf(names[0], &ca);
        let provider = crate::tls::crypto_provider();
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::try_from(key.serialize_der()).unwrap())
            .unwrap();
        LoadedCertificate {
            name: name.to_string(),
            names: names.iter().map(|s| s.to_string()).collect(),
            covered: crate::tls::covered::CoveredNames::new(names),
            key_kind: KeyKind::Ecdsa,
            certified_key: Arc::new(CertifiedKey::new(vec![der], signing)),
            not_after,
            not_before,
            subject: format!("CN={}", names[0]),
        }
    }

    fn settings(toml: &str) -> Settings {
        Settings::parse(Path::new("/nonexistent/snigate.toml"), toml).unwrap()
    }

    const NOW: u64 = 1_790_000_000; // 2026-09-21

    fn at(days_from_now: i64) -> SystemTime {
        let secs = NOW as i64 + days_from_now * DAY;
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn kinds(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.kind.as_str()).collect()
    }

    #[test]
    fn expiry_warnings() {
        let s = settings(
            "[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             default_upstream = \"u\"\n[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:1\"]\n",
        );
        let now = at(0);
        let fine = loaded("fine", &["a.test"], at(-10), at(31));
        assert!(inspect(&s, &[fine], now).is_empty());

        let soon = loaded(
            "soon",
            &["a.test"],
            at(-10),
            at(12) + Duration::from_secs(3600),
        );
        let f = inspect(&s, &[soon], now);
        assert_eq!(kinds(&f), ["expiring"]);
        assert_eq!(f[0].certificate.as_deref(), Some("soon"));
        assert!(
            f[0].message.contains("expires in 12 days, on 2026-10-03 "),
            "{}",
            f[0]
        );
        assert!(f[0].message.contains(" UTC"), "{}", f[0]);

        let edge = loaded("edge", &["a.test"], at(-10), at(30));
        assert_eq!(kinds(&inspect(&s, &[edge], now)), ["expiring"]);

        let gone = loaded("gone", &["a.test"], at(-100), at(-3));
        let f = inspect(&s, &[gone], now);
        assert_eq!(kinds(&f), ["expired"]);
        assert!(f[0].message.contains("expired 3 days ago"), "{}", f[0]);

        let early = loaded("early", &["a.test"], at(2), at(100));
        let f = inspect(&s, &[early], now);
        assert_eq!(kinds(&f), ["not_yet_valid"]);
        assert!(f[0].message.contains("(in 2 days)"), "{}", f[0]);
    }

    #[test]
    fn fallback_coverage_per_listener() {
        let s = settings(
            "[[certificate]]\nname = \"fb\"\nchain = \"fb.crt\"\nkey = \"fb.key\"\n\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
             [[listener]]\nname = \"other\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
             [[listener]]\nname = \"strict\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\nstrict_sni = true\n\
             [[route]]\nhosts = [\"a.test\", \"b.test\", \"*.w.test\", \"B.test\"]\nupstream = \"u\"\n\
             [[route]]\nhosts = [\"c.test\"]\nlisteners = [\"other\"]\nupstream = \"u\"\n\
             [[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:1\"]\n",
        );
        let fb = loaded("fb", &["a.test"], at(-1), at(100));
        let f = inspect(&s, &[fb], at(0));
        let got: Vec<(&str, Option<&str>)> = f
            .iter()
            .map(|f| (f.kind.as_str(), f.listener.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("fallback_uncovered", Some("main")),
                ("fallback_uncovered", Some("other")),
                ("fallback_uncovered", Some("other")),
            ],
            "{f:#?}"
        );
        assert!(f[0].message.contains("does not cover b.test"), "{}", f[0]);
        assert!(f[2].message.contains("does not cover c.test"), "{}", f[2]);
        assert!(f.iter().all(|f| f.certificate.as_deref() == Some("fb")));
    }

    #[test]
    fn a_farm_of_uncovered_hosts_is_one_finding_past_the_first_ten() {
        let hosts: Vec<String> = (0..25).map(|i| format!("\"site{i:02}.test\"")).collect();
        let s = settings(&format!(
            "[[certificate]]\nname = \"fb\"\nchain = \"fb.crt\"\nkey = \"fb.key\"\n\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
             [[route]]\nhosts = [{}]\nupstream = \"u\"\n\
             [[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:1\"]\n",
            hosts.join(", ")
        ));
        let fb = loaded("fb", &["a.test"], at(-1), at(100));
        let f = inspect(&s, &[fb], at(0));
        assert_eq!(f.len(), UNCOVERED_LISTED + 1, "{f:#?}");
        assert!(
            f[9].message.contains("does not cover site09.test;"),
            "{}",
            f[9]
        );
        assert!(
            f[10].message.contains(
                "does not cover 15 more routed hosts either (site10.test, site11.test, site12.test, ...)"
            ),
            "{}",
            f[10]
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/etc/ssl/a.key"), "/etc/ssl/a.key");
        assert_eq!(shell_word("/tmp/my key"), "'/tmp/my key'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        for k in [
            Kind::Expiring,
            Kind::Expired,
            Kind::NotYetValid,
            Kind::KeyReadable,
            Kind::ChainOrder,
            Kind::FallbackUncovered,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
    }
}
