//! Loading a `[[certificate]]` from a PKCS#12 file (`.pfx`, `.p12`): what
//! Windows administrators have, from `Export-PfxCertificate`, the certificate
//! MMC's export wizard or an IIS Centralized Certificate Store folder.
//!
//! The file is opened with the password in `pfx_password_file` (none: the
//! empty password), its private key and certificates are taken out as DER,
//! put in the order TLS needs (the key's certificate, then its issuer, that
//! issuer's issuer, ...: a PFX's bags come in any order), and handed to
//! [`certs::certified`](super::certs), which makes the same checks as for
//! PEM files.
//!
//! The PKCS#12 parser is the `p12-keystore` crate (0.4): pure Rust, so no
//! OpenSSL is needed at run time (OpenSSL 3 needs its "legacy" provider for
//! the old ciphers), maintained, and it reads the schemes Windows writes:
//! PBES2 (PBKDF2 with HMAC-SHA-256, AES-256-CBC: Windows Server 2019 and
//! later, and OpenSSL 3's default), pbeWithSHA1And3-KeyTripleDES-CBC and
//! pbeWithSHA1And40BitRC2-CBC (certificates in RC2-40, key in 3DES: Windows
//! Server 2016 and older, `openssl pkcs12 -legacy`), with an HMAC-SHA-1 or
//! SHA-2 integrity MAC. Its `Pkcs12Archive` gives the bags as they are, with
//! their localKeyId, so the order and the choice of the leaf stay here. It
//! caps the key derivation at 1,000,000 iterations, so a hostile file cannot
//! make a reload spin for minutes.

use std::path::Path;

use p12_keystore::Pkcs12Archive;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::certs::{certified, read_limited, CertError, LoadedCertificate};

/// A password file larger than this is not a password file.
const MAX_PASSWORD_BYTES: u64 = 64 * 1024;

/// Loads the `[[certificate]]` `name` from the PKCS#12 file `pfx`, opened with
/// the password in `password_file` (none: the empty password), and checks it
/// as [`load_certificate`](super::certs::load_certificate) checks PEM files.
pub fn load_pfx(
    name: &str,
    pfx: &Path,
    password_file: Option<&Path>,
    names: Option<&[String]>,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertError> {
    let (certs, key) = read_pfx(pfx, password_file, provider)?;
    certified(name, certs, key, (pfx, pfx), names, provider)
}

/// The certificates (the key's certificate first, then its issuers in order,
/// then any other certificate the file holds) and the PKCS#8 private key of
/// the PKCS#12 file `pfx`, opened with the password in `password_file`.
pub fn read_pfx(
    pfx: &Path,
    password_file: Option<&Path>,
    provider: &CryptoProvider,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertError> {
    let bytes = read_limited(pfx)?;
    let password = match password_file {
        Some(p) => read_password(p)?,
        None => String::new(),
    };
    // The parser is third-party code fed a hostile file: a panic in it must
    // become an error, not take the process (or a reload) down.
    let opened = std::panic::catch_unwind(|| Pkcs12Archive::from_pkcs12(&bytes, &password))
        .unwrap_or(Err(p12_keystore::error::Error::InvalidData));
    drop(password);
    let archive = opened.map_err(|e| open_error(pfx, password_file, &bytes, e))?;

    let key = match archive.keys.as_slice() {
        [key] => key,
        [] => {
            return Err(CertError::Pfx {
                path: pfx.to_path_buf(),
                detail: "it holds no private key; export the certificate with its private key \
                         (Export-PfxCertificate does; in the export wizard: \"Yes, export the \
                         private key\")"
                    .to_string(),
            })
        }
        several => {
            return Err(CertError::Pfx {
                path: pfx.to_path_buf(),
                detail: format!(
                    "it holds {} private keys; export one certificate with its key per file",
                    several.len()
                ),
            })
        }
    };
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.as_der().to_vec()));

    // Each certificate once, in bag order, with its localKeyId.
    let mut bags: Vec<(CertificateDer<'static>, Option<&[u8]>)> = Vec::new();
    for c in &archive.certs {
        if !bags.iter().any(|(d, _)| d.as_ref() == c.cert.as_der()) {
            bags.push((
                CertificateDer::from(c.cert.as_der().to_vec()),
                c.local_key_id.as_deref(),
            ));
        }
    }
    if bags.is_empty() {
        return Err(CertError::Pfx {
            path: pfx.to_path_buf(),
            detail: "it holds a private key but no certificate".to_string(),
        });
    }
    let parsed: Vec<Option<X509Certificate<'_>>> = bags
        .iter()
        .map(|(der, _)| {
            x509_parser::parse_x509_certificate(der.as_ref())
                .ok()
                .map(|(_, c)| c)
        })
        .collect();

    // The leaf: the certificate whose public key is the key's (a localKeyId
    // is only a label, and writers put it on the wrong bag at times); only
    // when the provider cannot tell the public key, the certificate with the
    // key's localKeyId. Else the first, and `certified` says what is wrong.
    let public_key = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .ok()
        .and_then(|k| k.public_key().map(|spki| spki.as_ref().to_vec()));
    let leaf = match public_key {
        Some(spki) => parsed
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.public_key().raw == spki))
            .ok_or_else(|| CertError::Pfx {
                path: pfx.to_path_buf(),
                detail: "none of its certificates belongs to its private key".to_string(),
            })?,
        None => {
            let key_id = key.local_key_id.as_ref().map(|id| id.as_ref());
            key_id
                .and_then(|id| bags.iter().position(|(_, l)| *l == Some(id)))
                .unwrap_or(0)
        }
    };
    let order = issuer_order(leaf, &parsed);
    drop(parsed);
    let mut slots: Vec<Option<CertificateDer<'static>>> =
        bags.into_iter().map(|(d, _)| Some(d)).collect();
    let certs = order.iter().filter_map(|&i| slots[i].take()).collect();
    Ok((certs, key_der))
}

/// Indices of `parsed` from `leaf`: each certificate's issuer (same name; the
/// one with the matching key identifier first) until a self-issued root or no
/// issuer in the file, then the others in file order, so that nothing in the
/// file is silently dropped (hygiene's `chain_order` names them). A
/// certificate that does not parse (`None`) is never an issuer.
fn issuer_order(leaf: usize, parsed: &[Option<X509Certificate<'_>>]) -> Vec<usize> {
    let mut order = vec![leaf];
    while let Some(cur) = order.last().and_then(|&i| parsed[i].as_ref()) {
        if cur.subject().as_raw() == cur.issuer().as_raw() {
            break; // self-issued: a root ends the chain
        }
        let wanted = authority_key_id(cur);
        let mut candidates = (0..parsed.len()).filter(|i| {
            !order.contains(i)
                && parsed[*i]
                    .as_ref()
                    .is_some_and(|c| c.subject().as_raw() == cur.issuer().as_raw())
        });
        let first = candidates.next();
        let by_key_id = wanted.and_then(|w| {
            first
                .into_iter()
                .chain(candidates)
                .find(|&i| parsed[i].as_ref().and_then(subject_key_id) == Some(w))
        });
        match by_key_id.or(first) {
            Some(i) => order.push(i),
            None => break,
        }
    }
    let rest: Vec<usize> = (0..parsed.len()).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    order
}

fn authority_key_id<'a>(c: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        })
}

fn subject_key_id<'a>(c: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

/// The password in `path`: UTF-8 text (a UTF-8 byte order mark is skipped),
/// or UTF-16 with a byte order mark (what Windows PowerShell 5.1's `>` and
/// `Out-File` write); one trailing newline (`\n` or `\r\n`, as Notepad or
/// `echo` leave) removed, the rest kept exactly.
pub fn read_password(path: &Path) -> Result<String, CertError> {
    let bytes = super::certs::read_limited_to(path, MAX_PASSWORD_BYTES)?;
    let bad = |detail: &str| CertError::PasswordFile {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let text = decode_text(&bytes).ok_or_else(|| {
        bad("it is neither UTF-8 text nor UTF-16 with a byte order mark; save it as UTF-8")
    })?;
    Ok(strip_one_newline(text))
}

/// `bytes` as text: UTF-16 when it starts with a byte order mark, else UTF-8
/// (its byte order mark skipped). None when it is neither.
fn decode_text(bytes: &[u8]) -> Option<String> {
    let utf16 = |rest: &[u8], from: fn([u8; 2]) -> u16| {
        if !rest.len().is_multiple_of(2) {
            return None;
        }
        let units = rest.chunks_exact(2).map(|c| from([c[0], c[1]]));
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .ok()
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec()).ok(),
        _ => String::from_utf8(bytes.to_vec()).ok(),
    }
}

/// `text` without one trailing `\r\n` or `\n`.
fn strip_one_newline(mut text: String) -> String {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    text
}

/// Why the file could not be opened, in plain words.
fn open_error(
    pfx: &Path,
    password_file: Option<&Path>,
    bytes: &[u8],
    e: p12_keystore::error::Error,
) -> CertError {
    use p12_keystore::error::Error as E;
    let detail = match e {
        // The MAC (or, without one, the padding of the decrypted data) does
        // not check out: the password is wrong.
        E::MacError(_) | E::UnpadError => {
            return CertError::WrongPassword {
                pfx: pfx.to_path_buf(),
                password_file: password_file.map(Path::to_path_buf),
            }
        }
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm => {
            "it is protected with an encryption or MAC algorithm snigate does not read \
             (it reads AES-CBC with PBKDF2, 3DES and RC2-40 with SHA-1 or SHA-2 MACs); \
             export it again with Export-PfxCertificate -CryptoAlgorithmOption AES256_SHA256"
                .to_string()
        }
        E::InvalidParameters => {
            "its encryption parameters are out of range (more than 1,000,000 iterations?)"
                .to_string()
        }
        E::UnsupportedCertificateType => "it holds a certificate that is not X.509".to_string(),
        E::X509Error(e) => format!("a certificate in it is not valid X.509: {e}"),
        E::InvalidPrivateKey => "its private key is not a valid PKCS#8 key".to_string(),
        _ if bytes.starts_with(b"-----BEGIN") || contains(bytes, b"-----BEGIN") => {
            "it is PEM text, not PKCS#12: write chain = and key = instead of pfx =".to_string()
        }
        other => format!("it is not a PKCS#12 (.pfx) file ({other})"),
    };
    CertError::Pfx {
        path: pfx.to_path_buf(),
        detail,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_stripped() {
        for (file, password) in [
            ("secret", "secret"),
            ("secret\n", "secret"),
            ("secret\r\n", "secret"),
            ("secret\n\n", "secret\n"),
            ("secret\r\n\r\n", "secret\r\n"),
            ("secret\r", "secret\r"),
            (" sec ret \t\n", " sec ret \t"),
            ("\n", ""),
            ("", ""),
        ] {
            let text = decode_text(file.as_bytes()).unwrap();
            assert_eq!(strip_one_newline(text), password, "{file:?}");
        }
    }

    #[test]
    fn byte_order_marks_are_read_not_kept() {
        // Windows PowerShell 5.1: `"pässword" > portal.pass` is UTF-16LE with a BOM and CRLF.
        let mut le = vec![0xFF, 0xFE];
        le.extend("pässword\r\n".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(strip_one_newline(decode_text(&le).unwrap()), "pässword");
        let mut be = vec![0xFE, 0xFF];
        be.extend("pässword\n".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(strip_one_newline(decode_text(&be).unwrap()), "pässword");
        let bom8 = [&[0xEF, 0xBB, 0xBF][..], "pässword\r\n".as_bytes()].concat();
        assert_eq!(strip_one_newline(decode_text(&bom8).unwrap()), "pässword");
        assert_eq!(decode_text(&[0xFF, 0xFE, 0x41]), None, "odd UTF-16");
        assert_eq!(decode_text(&[0xC3, 0x28]), None, "not UTF-8");
    }
}
