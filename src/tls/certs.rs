//! Loading the certificates the TLS server presents.
//!
//! A `[[certificate]]` in the configuration names a PEM chain (leaf first) and a PEM
//! private key. [`load_certificate`] turns them into a rustls [`CertifiedKey`] plus the
//! facts the rest of snigate needs: the host names the certificate serves, its key type
//! (to prefer ECDSA or RSA per client) and its validity period.
//!
//! Operators feed this module files exported from IIS, load balancers and old CAs, so
//! every failure is a [`CertError`] that names the file and says what is wrong in plain
//! words, with a hint where the usual mistake is recognisable (chain and key swapped,
//! a `.pfx` instead of PEM, an encrypted key, a chain out of order). No file content
//! can make it panic.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::tls::covered::CoveredNames;

/// Certificate and key files larger than this are refused before parsing: a
/// misconfigured path (a log file, `/dev/zero`) must not exhaust memory. Big CA
/// bundles stay well below it.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The type of a certificate's private key; decides which clients can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA (P-256, P-384; P-521 is accepted too).
    Ecdsa,
    /// RSA (PKCS#1 v1.5 and PSS signatures).
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    /// Lower-case name for logs and reports: "ecdsa", "rsa", "ed25519".
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Rsa => "rsa",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate chain and its private key, ready for rustls.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    /// The `[[certificate]]` name from the configuration.
    pub name: String,
    /// Lower-case host names it serves (no trailing dot): the explicit `names` from the
    /// configuration, else the leaf's DNS subjectAltNames, else (only when the leaf has
    /// no DNS subjectAltName at all) its subject common name.
    pub names: Vec<String>,
    /// `names` as a set, for [`LoadedCertificate::covers`] (asked on every
    /// request, and a fallback certificate may name thousands of hosts).
    pub covered: CoveredNames,
    /// The private key's type.
    pub key_kind: KeyKind,
    /// The chain (leaf first) and signing key for rustls.
    pub certified_key: Arc<CertifiedKey>,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// The leaf's notBefore.
    pub not_before: SystemTime,
    /// The leaf's subject, readable (for example `CN=portal.contoso.test, O=Contoso`).
    pub subject: String,
}

impl LoadedCertificate {
    /// Whole days from now until the leaf expires; negative once it has expired.
    pub fn expiry_days(&self) -> i64 {
        self.expiry_days_at(SystemTime::now())
    }

    /// Whole days from `now` until the leaf expires; negative once it has expired
    /// (rounded towards negative infinity, so an expired certificate is never "0 days").
    pub fn expiry_days_at(&self, now: SystemTime) -> i64 {
        let secs = signed_secs_between(now, self.not_after);
        secs.div_euclid(86_400)
    }

    /// Whether the leaf is within its validity period at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether this certificate serves `host` (the rules of [`covers`], at
    /// the cost of a lookup rather than a scan of `names`).
    pub fn covers(&self, host: &str) -> bool {
        self.covered.covers(host)
    }
}

/// `to - from` in seconds, negative when `to` is earlier; saturates instead of panicking.
fn signed_secs_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs())
            .map(|s| -s)
            .unwrap_or(i64::MIN),
    }
}

/// Why a certificate could not be loaded. Every message names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be read.
    #[error("cannot read {}: {}", path.display(), io_reason(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any certificate or key file should be.
    #[error("{} is larger than {}; is this really a certificate, key or password file?", path.display(), size_words(*limit))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The largest size accepted for this kind of file, in bytes.
        limit: u64,
    },
    /// The file has PEM markers but a section is broken.
    #[error("{} is not valid PEM: {detail}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        detail: String,
    },
    /// The chain file holds no `CERTIFICATE` section.
    #[error("{} contains no PEM certificate{hint}", path.display())]
    NoCertificate {
        /// The chain file.
        path: PathBuf,
        /// ": " and a hint, or empty.
        hint: String,
    },
    /// The key file holds no usable private key section.
    #[error("{} contains no private key (expected PKCS#8, PKCS#1 RSA or SEC1 EC PEM){hint}", path.display())]
    NoPrivateKey {
        /// The key file.
        path: PathBuf,
        /// ": " and a hint, or empty.
        hint: String,
    },
    /// The key file holds more than one private key, so which one is meant is unclear.
    #[error("{} contains {count} private keys; keep only the key of the certificate", path.display())]
    SeveralPrivateKeys {
        /// The key file.
        path: PathBuf,
        /// How many keys it holds.
        count: usize,
    },
    /// A certificate in the chain does not parse as X.509.
    #[error("certificate in {} is not valid X.509: {detail}", path.display())]
    InvalidCertificate {
        /// The chain file.
        path: PathBuf,
        /// What is wrong, including which certificate of the chain.
        detail: String,
    },
    /// The private key is of a type (or encoding) the TLS provider cannot use.
    #[error("unsupported key type in {}: {detail}", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// What the provider reported.
        detail: String,
    },
    /// The private key is not the key of the leaf certificate.
    #[error("{} does not match the certificate in {}{hint}", key.display(), chain.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The chain file.
        chain: PathBuf,
        /// ": " and a hint, or empty.
        hint: String,
    },
    /// Neither the configuration nor the certificate gives a host name.
    #[error("certificate {name}: {} names no host (no DNS subjectAltName; set names = [...])", chain.display())]
    NoNames {
        /// The `[[certificate]]` name.
        name: String,
        /// The chain file whose leaf names no host.
        chain: PathBuf,
    },
    /// A PKCS#12 (`.pfx`) file that cannot be used.
    #[error("{}: {detail}", path.display())]
    Pfx {
        /// The pfx file.
        path: PathBuf,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// The PKCS#12 file's password is not the one given.
    #[error("{}", wrong_password(pfx, password_file.as_deref()))]
    WrongPassword {
        /// The pfx file.
        pfx: PathBuf,
        /// The `pfx_password_file`, if any (none: the empty password was tried).
        password_file: Option<PathBuf>,
    },
    /// A `pfx_password_file` that is not text.
    #[error("password file {}: {detail}", path.display())]
    PasswordFile {
        /// The password file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An explicit `names` entry is empty or not a host name.
    #[error("certificate {name} ({}): {entry:?} in names is not a host name", chain.display())]
    InvalidName {
        /// The `[[certificate]]` name.
        name: String,
        /// The chain file the names are for.
        chain: PathBuf,
        /// The offending entry.
        entry: String,
    },
}

/// The message of [`CertError::WrongPassword`].
fn wrong_password(pfx: &Path, password_file: Option<&Path>) -> String {
    match password_file {
        Some(p) => format!(
            "wrong password in {} for {} (the whole file is the password, less one \
             trailing newline)",
            p.display(),
            pfx.display()
        ),
        None => format!(
            "{} is protected by a password: put it in a file and name that file in \
             pfx_password_file",
            pfx.display()
        ),
    }
}

/// Which file of a `[[certificate]]` an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFile {
    /// The `chain` file (or the names its leaf gives).
    Chain,
    /// The `key` file.
    Key,
}

impl CertError {
    /// Which of the two files of the `[[certificate]]` with these `chain`
    /// and `key` paths the error is about. A read or PEM error is the key's
    /// only when the key is a file of its own (a combined PEM file is read
    /// as the chain first).
    pub fn file(&self, chain: &Path, key: &Path) -> CertFile {
        match self {
            CertError::Read { path, .. }
            | CertError::TooLarge { path, .. }
            | CertError::BadPem { path, .. } => {
                if path == key && path != chain {
                    CertFile::Key
                } else {
                    CertFile::Chain
                }
            }
            CertError::NoPrivateKey { .. }
            | CertError::SeveralPrivateKeys { .. }
            | CertError::UnsupportedKey { .. }
            | CertError::KeyMismatch { .. } => CertFile::Key,
            CertError::NoCertificate { .. }
            | CertError::Pfx { .. }
            | CertError::WrongPassword { .. }
            | CertError::PasswordFile { .. }
            | CertError::InvalidCertificate { .. }
            | CertError::NoNames { .. }
            | CertError::InvalidName { .. } => CertFile::Chain,
        }
    }
}

/// "16 MiB", "64 KiB", "100 bytes".
fn size_words(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// An I/O error in plain words: "No such file or directory", without " (os error 2)".
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Loads a certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8,
/// PKCS#1 RSA or SEC1 EC), checks that the key belongs to the leaf, and works out the
/// host names served: `names` if given, else the leaf's DNS subjectAltNames, else its
/// subject CN.
///
/// `provider` parses the key, so only key types it can sign with are accepted (with
/// aws-lc-rs: RSA, ECDSA P-256/P-384/P-521, Ed25519).
pub fn load_certificate(
    name: &str,
    chain: &Path,
    key: &Path,
    names: Option<&[String]>,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertError> {
    let chain_bytes = read_limited(chain)?;
    let certs = parse_chain(chain, &chain_bytes)?;
    let key_bytes = read_limited(key)?;
    let key_der = parse_key(key, &key_bytes)?;
    certified(name, certs, key_der, (chain, key), names, provider)
}

/// The checks every certificate goes through, whatever file it came from:
/// each certificate of `certs` (leaf first, at least one) parses, `provider`
/// can sign with `key_der`, the key is the leaf's, and the names served.
/// `files` are the chain and key files, for the messages (a `.pfx` is both).
pub(crate) fn certified(
    name: &str,
    certs: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    files: (&Path, &Path),
    names: Option<&[String]>,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertError> {
    let (chain, key) = files;
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            path: chain.to_path_buf(),
            hint: String::new(),
        });
    }
    // Parse every certificate, not just the leaf, so a broken intermediate is reported
    // here rather than as a mysterious handshake failure in some client.
    let mut parsed = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        parsed.push(parse_x509(chain, der, i, certs.len())?);
    }
    let leaf = &parsed[0];

    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| CertError::UnsupportedKey {
            path: key.to_path_buf(),
            // rustls prefixes General errors with "unexpected error: ", which misleads here.
            detail: match e {
                rustls::Error::General(s) => s,
                other => other.to_string(),
            },
        })?;
    let key_kind = match signing_key.algorithm() {
        rustls::SignatureAlgorithm::RSA => KeyKind::Rsa,
        rustls::SignatureAlgorithm::ECDSA => KeyKind::Ecdsa,
        rustls::SignatureAlgorithm::ED25519 => KeyKind::Ed25519,
        other => {
            return Err(CertError::UnsupportedKey {
                path: key.to_path_buf(),
                detail: format!("{other:?} keys cannot be served"),
            })
        }
    };

    // Compare SubjectPublicKeyInfo ourselves (what rustls' `keys_match` does) so that a
    // mismatch can say whether the key belongs to another certificate of the chain.
    // A provider that cannot tell its public key leaves nothing to compare, as in rustls.
    if let Some(spki) = signing_key.public_key() {
        if spki.as_ref() != leaf.public_key().raw {
            let hint = match parsed
                .iter()
                .skip(1)
                .position(|c| c.public_key().raw == spki.as_ref())
            {
                Some(i) => format!(
                    ": it is the key of certificate {} in the chain; \
                     put the server certificate first",
                    i + 2
                ),
                None => String::new(),
            };
            return Err(CertError::KeyMismatch {
                key: key.to_path_buf(),
                chain: chain.to_path_buf(),
                hint,
            });
        }
    }

    let names = match names {
        Some(explicit) => explicit_names(name, chain, explicit)?,
        None => names_from_leaf(leaf),
    };
    if names.is_empty() {
        return Err(CertError::NoNames {
            name: name.to_string(),
            chain: chain.to_path_buf(),
        });
    }

    let validity = leaf.validity();
    let not_before = system_time(validity.not_before.timestamp());
    let not_after = system_time(validity.not_after.timestamp());
    let subject = leaf.subject().to_string();
    drop(parsed);

    let certified_key = Arc::new(CertifiedKey::new(certs, signing_key));
    Ok(LoadedCertificate {
        name: name.to_string(),
        covered: CoveredNames::new(&names),
        names,
        key_kind,
        certified_key,
        not_after,
        not_before,
        subject,
    })
}

/// Reads a whole file, refusing anything bigger than [`MAX_FILE_BYTES`].
pub(crate) fn read_limited(path: &Path) -> Result<Vec<u8>, CertError> {
    read_limited_to(path, MAX_FILE_BYTES)
}

/// Reads a whole file, refusing anything bigger than `max` bytes.
pub(crate) fn read_limited_to(path: &Path, max: u64) -> Result<Vec<u8>, CertError> {
    let read_err = |source| CertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() as u64 > max {
        return Err(CertError::TooLarge {
            path: path.to_path_buf(),
            limit: max,
        });
    }
    Ok(buf)
}

/// All PEM sections of a file, with their kinds; a broken section is an error.
fn pem_sections(path: &Path, bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, CertError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadPem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

fn is_private_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// A hint for a file with no PEM section: recognises DER and PKCS#12 (`.pfx`, what IIS
/// exports), the usual cause.
fn der_hint(bytes: &[u8]) -> Option<&'static str> {
    (!contains(bytes, b"-----BEGIN") && bytes.first() == Some(&0x30)).then_some(
        ": it looks like binary DER or PKCS#12 (.pfx), not PEM; for a .pfx write \
         pfx = \"FILE.pfx\" (and pfx_password_file) instead of chain and key, \
         for a DER certificate convert it with openssl x509 -inform der",
    )
}

/// Whether a key file holds an encrypted key (PKCS#8 or traditional OpenSSL style),
/// which snigate cannot use: there is nobody to type a passphrase at reload.
fn is_encrypted_key(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `CERTIFICATE` sections of the chain file, in order; at least one.
fn parse_chain(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let sections = pem_sections(path, bytes)?;
    let certs: Vec<CertificateDer<'static>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        let hint = if sections.iter().any(|(k, _)| is_private_key(*k)) {
            ": it holds a private key; are chain and key swapped?".to_string()
        } else {
            der_hint(bytes).unwrap_or_default().to_string()
        };
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
            hint,
        });
    }
    Ok(certs)
}

/// The single private key of the key file.
fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    if is_encrypted_key(bytes) {
        return Err(CertError::NoPrivateKey {
            path: path.to_path_buf(),
            hint: ": the key is encrypted; snigate needs it unencrypted \
                   (openssl pkey -in KEY -out KEY.plain)"
                .to_string(),
        });
    }
    let sections = pem_sections(path, bytes)?;
    let mut keys: Vec<PrivateKeyDer<'static>> = sections
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .collect();
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => {
            let hint = match der_hint(bytes) {
                Some(h) => h.to_string(),
                None if CertificateDer::pem_slice_iter(bytes).next().is_some() => {
                    ": it holds a certificate; are chain and key swapped?".to_string()
                }
                None => String::new(),
            };
            Err(CertError::NoPrivateKey {
                path: path.to_path_buf(),
                hint,
            })
        }
        count => Err(CertError::SeveralPrivateKeys {
            path: path.to_path_buf(),
            count,
        }),
    }
}

/// Parses certificate `index` of `total` in `path`.
fn parse_x509<'a>(
    path: &Path,
    der: &'a CertificateDer<'_>,
    index: usize,
    total: usize,
) -> Result<X509Certificate<'a>, CertError> {
    let which = if total == 1 {
        String::new()
    } else if index == 0 {
        "the first (server) certificate: ".to_string()
    } else {
        format!("certificate {} of {total}: ", index + 1)
    };
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(CertError::InvalidCertificate {
            path: path.to_path_buf(),
            detail: format!("{which}{} bytes of trailing data", rest.len()),
        }),
        Err(e) => Err(CertError::InvalidCertificate {
            path: path.to_path_buf(),
            detail: format!("{which}{e}"),
        }),
    }
}

/// Normalises a host name for comparison: lower case, no trailing dot.
fn normalise(host: &str) -> String {
    let host = host.trim();
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The configured names, normalised and de-duplicated; an empty or blank entry is an error.
fn explicit_names(name: &str, chain: &Path, explicit: &[String]) -> Result<Vec<String>, CertError> {
    let mut out: Vec<String> = Vec::with_capacity(explicit.len());
    for entry in explicit {
        let n = normalise(entry);
        if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CertError::InvalidName {
                name: name.to_string(),
                chain: chain.to_path_buf(),
                entry: entry.clone(),
            });
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// DNS subjectAltNames of the leaf; only if it has none, a host-like subject CN.
fn names_from_leaf(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // A malformed SAN extension yields no names rather than an error: the certificate
    // already parsed, and `names = [...]` in the configuration is the way out.
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::DNSName(dns) = gn {
                let n = normalise(dns);
                if !n.is_empty() && !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    if out.is_empty() {
        // Old certificates carry the host only in the CN. A CN with spaces ("Contoso
        // Web Server") is a label, not a host, and must not become a name.
        for cn in leaf.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                let n = normalise(cn);
                if !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'))
                    && !out.contains(&n)
                {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// A Unix timestamp as [`SystemTime`], saturating at the epoch's representable range.
fn system_time(ts: i64) -> SystemTime {
    let abs = Duration::from_secs(ts.unsigned_abs());
    if ts >= 0 {
        UNIX_EPOCH.checked_add(abs).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(abs).unwrap_or(UNIX_EPOCH)
    }
}

/// Whether a certificate with host names `names` serves `host`.
///
/// Case-insensitive; a trailing dot on `host` (or a name) is ignored. A name matches
/// exactly, or as `*.example.com`, which covers exactly one further label:
/// `a.example.com` yes, `a.b.example.com` no, `example.com` no.
pub fn covers(names: &[String], host: &str) -> bool {
    let host = normalise(host);
    if host.is_empty() {
        return false;
    }
    names.iter().any(|name| {
        let name = normalise(name);
        if name == host {
            return true;
        }
        match name.strip_prefix('*') {
            // `suffix` keeps its leading dot: ".example.com".
            Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => host
                .strip_suffix(suffix)
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            _ => false,
        }
    })
}
