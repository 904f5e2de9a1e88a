//! `snigate gen-certs`: a lab CA, one leaf certificate per host name and a fallback
//! certificate covering all of them, as PEM files.
//!
//! Output in DIR:
//! - `ca.crt`, `ca.key`: "snigate lab CA". Kept when both already exist, so re-running
//!   with more names keeps the trust anchor the operator installed on clients.
//! - `NAME.crt`, `NAME.key` per name (a wildcard `*.apps.test` is written as
//!   `_wildcard.apps.test.crt`, since `*` is not allowed in Windows file names).
//! - `fallback.crt`, `fallback.key`: one certificate whose subjectAltNames are all the
//!   names: what a listener serves to ClientHellos without SNI.
//!
//! Leaves are what old clients accept: serverAuth EKU, digitalSignature (and
//! keyEncipherment for RSA, which TLS_RSA_* key exchange needs), at most 825 days of
//! validity (the Apple/old Windows limit) starting a day ago (clock skew). Keys are
//! PKCS#8 PEM, written with mode 0600 on Unix.
//!
//! Symbolic links are never followed in DIR: a link where an output file (or the
//! kept CA) would be is refused with [`GenCertsError::Symlink`] before anything is
//! written, and every file is first created under a fresh temporary name with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and then renamed into place (a rename replaces a link
//! itself, never its target). So a link planted in a shared folder can never make
//! gen-certs write the CA key somewhere else, or sign with someone else's CA.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, RsaKeySize,
};
use x509_parser::time::ASN1Time;

use crate::tls::certs::io_reason;

const DAY_SECS: i64 = 86_400;
/// Total leaf validity (notBefore..notAfter): the limit Apple platforms and old Windows
/// enforce for TLS server certificates.
const LEAF_VALIDITY_DAYS: i64 = 825;
/// A fresh lab CA lives ten years: re-installing a trust anchor is the chore to avoid.
const CA_VALIDITY_DAYS: i64 = 3650;
/// Common name of the lab CA.
pub const CA_COMMON_NAME: &str = "snigate lab CA";

/// The key algorithm of generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256.
    #[default]
    Ecdsa,
    /// RSA 2048-bit with SHA-256 (PKCS#1 v1.5 signatures): for clients without ECDSA.
    Rsa,
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ecdsa" => Ok(KeyAlgorithm::Ecdsa),
            "rsa" => Ok(KeyAlgorithm::Rsa),
            _ => Err(format!("unknown key type {s:?} (expected ecdsa or rsa)")),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ecdsa => "ecdsa",
            KeyAlgorithm::Rsa => "rsa",
        })
    }
}

/// The files [`generate`] wrote (or, for the CA, kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSet {
    /// The output directory.
    pub dir: PathBuf,
    /// `DIR/ca.crt`.
    pub ca_cert: PathBuf,
    /// `DIR/ca.key`.
    pub ca_key: PathBuf,
    /// Per host name (normalised, in the order given): its certificate and key file.
    pub leaves: Vec<(String, PathBuf, PathBuf)>,
    /// `DIR/fallback.crt` and `DIR/fallback.key`: all names in one certificate.
    pub fallback: (PathBuf, PathBuf),
    /// True when an existing `ca.crt`/`ca.key` pair was reused rather than created.
    pub ca_reused: bool,
}

/// Why `gen-certs` failed.
#[derive(Debug, thiserror::Error)]
pub enum GenCertsError {
    /// No host name was given.
    #[error("no host names given (use --names a.test,b.test)")]
    NoNames,
    /// A host name is not usable as a DNS name or file name.
    #[error("invalid host name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, writing or creating a file or directory failed.
    #[error("cannot {action} {}: {}", path.display(), io_reason(source))]
    Io {
        /// "create directory", "inspect", "read", "write", "create a temporary file for".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file gen-certs would write (or the CA it would keep) is a symbolic link.
    #[error("{} is a symbolic link; gen-certs never writes or reads through links in its output folder: remove it, or point --dir at the folder it leads to", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Only one of `ca.crt` and `ca.key` exists; refusing to replace half a CA.
    #[error("{} exists but {} does not; restore it, or remove {} to create a new lab CA", present.display(), missing.display(), present.display())]
    CaIncomplete {
        /// The CA file that exists.
        present: PathBuf,
        /// The CA file that is missing.
        missing: PathBuf,
    },
    /// The existing CA in the directory cannot sign (unparsable, not a CA, key does not
    /// match, expired).
    #[error("{} is not a usable CA: {detail}; remove ca.crt and ca.key to create a new one", path.display())]
    CaUnusable {
        /// `ca.crt` or `ca.key`.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rcgen failed to generate a key or build a certificate.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// The system clock is outside what a certificate can express.
    #[error("the system clock is unusable for certificate dates")]
    Clock,
}

/// Checks and normalises an operator-supplied host name: lower case, no trailing dot,
/// DNS labels of letters, digits, `-` and `_` (1 to 63 characters, not starting or ending
/// with `-`), optionally `*.` followed by at least two labels. IPv4 literals pass (they
/// are written as IP-address subjectAltNames).
pub fn validate_name(raw: &str) -> Result<String, GenCertsError> {
    let invalid = |reason: &str| GenCertsError::InvalidName {
        name: raw.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = raw.trim();
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*')))
    {
        return Err(invalid(&format!(
            "{c:?} is not allowed (letters, digits, '-', '_', '.' and a leading '*.')"
        )));
    }
    let (wildcard, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name.as_str()),
    };
    if rest.contains('*') {
        return Err(invalid(
            "'*' is only allowed as the whole first label, as in *.apps.test",
        ));
    }
    let labels: Vec<&str> = rest.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(invalid(
                "it has an empty label (two dots in a row, or a leading dot)",
            ));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with '-'"));
        }
    }
    if wildcard && labels.len() < 2 {
        // Clients refuse "*.test"-style wildcards over a top-level name.
        return Err(invalid("a wildcard needs at least two labels after '*.'"));
    }
    let stem = file_stem(&name);
    if stem == "ca" || stem == "fallback" {
        return Err(invalid(&format!(
            "its files would overwrite {stem}.crt and {stem}.key"
        )));
    }
    Ok(name)
}

/// The file name stem for a host name: the name itself, with a leading `*` spelled
/// `_wildcard` (`*.apps.test` becomes `_wildcard.apps.test`).
pub fn file_stem(name: &str) -> String {
    match name.strip_prefix('*') {
        Some(rest) => format!("_wildcard{rest}"),
        None => name.to_string(),
    }
}

/// Writes the lab CA (or keeps an existing one), a leaf per name and the fallback
/// certificate into `dir`, creating `dir` if needed. `names` entries may themselves be
/// comma-separated; duplicates are dropped. Existing leaf and fallback files are replaced.
/// A symbolic link where any of these files would be (or where the CA is looked for) is
/// [`GenCertsError::Symlink`], found before anything is written.
///
/// A fresh CA uses `key`'s algorithm; an existing CA signs whatever `key` asks for.
pub fn generate(
    dir: &Path,
    names: &[String],
    key: KeyAlgorithm,
) -> Result<GeneratedSet, GenCertsError> {
    let mut hosts: Vec<String> = Vec::new();
    for entry in names {
        for part in entry.split(',') {
            let host = validate_name(part)?;
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    if hosts.is_empty() {
        return Err(GenCertsError::NoNames);
    }

    std::fs::create_dir_all(dir).map_err(|source| GenCertsError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let leaf_paths: Vec<(PathBuf, PathBuf)> = hosts
        .iter()
        .map(|host| {
            let stem = file_stem(host);
            (
                dir.join(format!("{stem}.crt")),
                dir.join(format!("{stem}.key")),
            )
        })
        .collect();
    let fallback = (dir.join("fallback.crt"), dir.join("fallback.key"));
    // Every link refused before the first file is written: a half-written set
    // helps nobody.
    let outputs = leaf_paths
        .iter()
        .chain(std::iter::once(&fallback))
        .flat_map(|(crt, key)| [crt, key]);
    for path in [&ca_cert, &ca_key].into_iter().chain(outputs) {
        present(path)?;
    }
    let now = unix_now()?;
    let not_before = now - DAY_SECS;

    let (issuer, ca_not_after, ca_reused) = match (present(&ca_cert)?, present(&ca_key)?) {
        (true, true) => {
            let (issuer, ca_not_after) = load_ca(&ca_cert, &ca_key, now)?;
            (issuer, ca_not_after, true)
        }
        (false, false) => {
            let ca_not_after = not_before + CA_VALIDITY_DAYS * DAY_SECS;
            let issuer = create_ca(&ca_cert, &ca_key, key, not_before, ca_not_after)?;
            (issuer, ca_not_after, false)
        }
        (true, false) => {
            return Err(GenCertsError::CaIncomplete {
                present: ca_cert,
                missing: ca_key,
            })
        }
        (false, true) => {
            return Err(GenCertsError::CaIncomplete {
                present: ca_key,
                missing: ca_cert,
            })
        }
    };

    // A leaf must not outlive its CA: clients would reject it after the CA expires anyway,
    // and some reject such a chain outright.
    let leaf_not_after = (not_before + (LEAF_VALIDITY_DAYS - 1) * DAY_SECS).min(ca_not_after);
    let validity = (not_before, leaf_not_after);

    let mut leaves = Vec::with_capacity(hosts.len());
    for (host, (crt, keyf)) in hosts.iter().zip(leaf_paths) {
        issue_leaf(
            &issuer,
            key,
            std::slice::from_ref(host),
            validity,
            &crt,
            &keyf,
        )?;
        leaves.push((host.clone(), crt, keyf));
    }

    issue_leaf(&issuer, key, &hosts, validity, &fallback.0, &fallback.1)?;

    Ok(GeneratedSet {
        dir: dir.to_path_buf(),
        ca_cert,
        ca_key,
        leaves,
        fallback,
        ca_reused,
    })
}

/// Whether something is at `path`, without following a link there: a symbolic link
/// (dangling or not) is [`GenCertsError::Symlink`].
fn present(path: &Path) -> Result<bool, GenCertsError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(GenCertsError::Symlink {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(GenCertsError::Io {
            action: "inspect",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `O_NOFOLLOW` where the platform has it: opening a symbolic link fails (ELOOP)
/// instead of opening what it points to.
#[cfg(unix)]
fn no_follow(options: &mut std::fs::OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NOFOLLOW);
}

#[cfg(not(unix))]
fn no_follow(_options: &mut std::fs::OpenOptions) {}

/// The error for a failed open or create of `path`: a link swapped in after
/// [`present`] looked (ELOOP from `O_NOFOLLOW`) is still reported as a link.
fn open_error(action: &'static str, path: &Path, source: std::io::Error) -> GenCertsError {
    #[cfg(unix)]
    if source.raw_os_error() == Some(libc::ELOOP) {
        return GenCertsError::Symlink {
            path: path.to_path_buf(),
        };
    }
    GenCertsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole file without following a symbolic link at `path`.
fn read_no_follow(path: &Path) -> Result<String, GenCertsError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    no_follow(&mut options);
    let mut file = options
        .open(path)
        .map_err(|e| open_error("read", path, e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| GenCertsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text)
}

fn unix_now() -> Result<i64, GenCertsError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| GenCertsError::Clock)?
        .as_secs();
    i64::try_from(secs).map_err(|_| GenCertsError::Clock)
}

/// Sets notBefore/notAfter from Unix timestamps. The conversion goes through
/// x509-parser so that the `time` crate (rcgen's date type) need not be a direct
/// dependency.
fn set_validity(
    params: &mut CertificateParams,
    not_before: i64,
    not_after: i64,
) -> Result<(), GenCertsError> {
    let date = |ts| ASN1Time::from_timestamp(ts).map_err(|_| GenCertsError::Clock);
    params.not_before = date(not_before)?.to_datetime();
    params.not_after = date(not_after)?.to_datetime();
    Ok(())
}

fn new_key(alg: KeyAlgorithm, what: &str) -> Result<KeyPair, GenCertsError> {
    let generated = match alg {
        KeyAlgorithm::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        // rcgen generates RSA keys only with its aws_lc_rs backend, which is enabled.
        KeyAlgorithm::Rsa => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
    };
    generated.map_err(|source| GenCertsError::Generate {
        what: format!("a key for {what}"),
        source,
    })
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> GenCertsError + '_ {
    move |source| GenCertsError::Generate {
        what: what.to_string(),
        source,
    }
}

/// Creates and writes a self-signed lab CA; returns the issuer that signs leaves.
fn create_ca(
    ca_cert: &Path,
    ca_key: &Path,
    alg: KeyAlgorithm,
    not_before: i64,
    not_after: i64,
) -> Result<Issuer<'static, KeyPair>, GenCertsError> {
    let key = new_key(alg, "the lab CA")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "snigate lab");
    params.distinguished_name = dn;
    // Path length 0: this CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, not_before, not_after)?;
    let cert = params
        .self_signed(&key)
        .map_err(gen_err("the lab CA certificate"))?;
    // Key first: a crash in between leaves "ca.key without ca.crt", which generate()
    // reports instead of silently replacing.
    write_file(ca_key, key.serialize_pem().as_bytes(), true)?;
    write_file(ca_cert, cert.pem().as_bytes(), false)?;
    Ok(Issuer::new(params, key))
}

/// Loads an existing CA and checks it can sign: parses, is a CA, key matches, not expired.
/// Returns the issuer and the CA's notAfter.
fn load_ca(
    ca_cert: &Path,
    ca_key: &Path,
    now: i64,
) -> Result<(Issuer<'static, KeyPair>, i64), GenCertsError> {
    let unusable = |path: &Path, detail: String| GenCertsError::CaUnusable {
        path: path.to_path_buf(),
        detail,
    };
    let cert_pem = read_no_follow(ca_cert)?;
    let key_pem = read_no_follow(ca_key)?;

    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| unusable(ca_key, format!("cannot parse the private key ({e})")))?;

    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| unusable(ca_cert, format!("no PEM certificate ({e})")))?;
    let (_, x509) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| unusable(ca_cert, format!("not valid X.509 ({e})")))?;
    if !x509.is_ca() {
        return Err(unusable(ca_cert, "it is not a CA certificate".to_string()));
    }
    if key.subject_public_key_info() != x509.public_key().raw {
        return Err(unusable(ca_key, "it is not the key of ca.crt".to_string()));
    }
    let ca_not_after = x509.validity().not_after.timestamp();
    // A day of margin, so the leaves issued now are not dead on arrival.
    if ca_not_after <= now + DAY_SECS {
        return Err(unusable(
            ca_cert,
            format!("it expires {}", x509.validity().not_after),
        ));
    }
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| unusable(ca_cert, format!("cannot use it to sign ({e})")))?;
    Ok((issuer, ca_not_after))
}

/// Generates a key and a CA-signed server certificate for `hosts` (the first is the CN)
/// and writes both.
fn issue_leaf(
    issuer: &Issuer<'static, KeyPair>,
    alg: KeyAlgorithm,
    hosts: &[String],
    (not_before, not_after): (i64, i64),
    crt: &Path,
    key_path: &Path,
) -> Result<(), GenCertsError> {
    let what = format!("the certificate {}", crt.display());
    let key = new_key(alg, &what)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(gen_err(&what))?;
    let mut dn = DistinguishedName::new();
    // The CN repeats the first name for old clients and tools that still read it.
    dn.push(DnType::CommonName, hosts[0].as_str());
    dn.push(DnType::OrganizationName, "snigate lab");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = match alg {
        KeyAlgorithm::Ecdsa => vec![KeyUsagePurpose::DigitalSignature],
        // TLS_RSA_* key exchange (old clients, passthrough backends) encrypts to the key.
        KeyAlgorithm::Rsa => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
    };
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, not_before, not_after)?;
    let cert = params.signed_by(&key, issuer).map_err(gen_err(&what))?;
    write_file(key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(crt, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Temporary names tried per file before giving up: each is taken only if nothing
/// is there yet, so a file (or link) planted under the next name costs one attempt.
const TEMP_ATTEMPTS: u32 = 16;

/// Writes `contents` to `path` through a temporary file and a rename, so a reader never
/// sees half a file; `secret` files get mode 0600 on Unix from the moment they exist.
///
/// Never follows a symbolic link: a link at `path` is refused, the temporary file is
/// created with `O_CREAT|O_EXCL|O_NOFOLLOW` (a link, or anything else, under its name
/// is skipped, not opened), and the rename replaces whatever is at `path` itself.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), GenCertsError> {
    present(path)?;
    let (tmp, mut file) = create_temp(path, secret)?;
    let result = (|| {
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|source| GenCertsError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Creates a new, empty temporary file beside `path` (same folder, so the rename
/// stays on one file system) and returns its name and handle.
fn create_temp(path: &Path, secret: bool) -> Result<(PathBuf, std::fs::File), GenCertsError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for attempt in 0..TEMP_ATTEMPTS {
        let tmp = path.with_file_name(format!(".{file_name}.{}.{attempt}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        // create_new: O_CREAT|O_EXCL, which fails on an existing name, links included.
        options.write(true).create_new(true);
        no_follow(&mut options);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if secret { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = secret;
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(source) => {
                return Err(GenCertsError::Io {
                    action: "create a temporary file for",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(GenCertsError::Io {
        action: "create a temporary file for",
        path: path.to_path_buf(),
        source: last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
    })
}
