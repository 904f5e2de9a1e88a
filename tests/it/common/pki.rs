//! A test PKI minted with rcgen: a CA, leaves with the names and key types
//! a test asks for, written as PEM files the configuration can name.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize,
};
use rustls::pki_types::CertificateDer;

/// Key type of a minted leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Ecdsa,
    Rsa,
}

/// A minted leaf certificate, written to disk as PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub label: String,
    pub chain: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

/// A test CA in a folder, and every leaf it issued (to tell which one a
/// server presented).
pub struct Pki {
    pub dir: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    issued: Mutex<Vec<(String, CertificateDer<'static>)>>,
}

impl Pki {
    /// A fresh ECDSA P-256 CA written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "snigate test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_der: cert.der().clone(),
            ca_pem,
            issuer: Issuer::new(params, key),
            issued: Mutex::new(Vec::new()),
        }
    }

    /// Issues a leaf for `names` (DNS subjectAltNames; the first is also the
    /// CN) and writes `dir/LABEL.crt` and `dir/LABEL.key`.
    pub fn leaf(&self, label: &str, names: &[&str], key: Key) -> Leaf {
        let params = leaf_params(names);
        let kp = match key {
            Key::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Key::Rsa => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        }
        .unwrap();
        let cert = params.signed_by(&kp, &self.issuer).unwrap();
        let chain = self.dir.join(format!("{label}.crt"));
        let keyf = self.dir.join(format!("{label}.key"));
        std::fs::write(&chain, cert.pem()).unwrap();
        std::fs::write(&keyf, kp.serialize_pem()).unwrap();
        self.issued
            .lock()
            .unwrap()
            .push((label.to_string(), cert.der().clone()));
        Leaf {
            label: label.to_string(),
            chain,
            key: keyf,
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// Issues a leaf for `names` with the key `kp` already written to
    /// `key_file` (many leaves, one key: minting thousands stays quick) and
    /// writes `dir/LABEL.crt`. [`Pki::which`] does not know it.
    pub fn leaf_with_key(
        &self,
        label: &str,
        names: &[&str],
        kp: &KeyPair,
        key_file: &Path,
    ) -> Leaf {
        let cert = leaf_params(names).signed_by(kp, &self.issuer).unwrap();
        let chain = self.dir.join(format!("{label}.crt"));
        std::fs::write(&chain, cert.pem()).unwrap();
        Leaf {
            label: label.to_string(),
            chain,
            key: key_file.to_path_buf(),
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// The label of the leaf with this DER, or "unknown certificate".
    pub fn which(&self, der: &CertificateDer<'_>) -> String {
        self.issued
            .lock()
            .unwrap()
            .iter()
            .find(|(_, d)| d.as_ref() == der.as_ref())
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| "unknown certificate".into())
    }
}

/// A server certificate's parameters for `names` (the first is also the CN).
fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params
}

/// A `[[certificate]]` block for a leaf.
pub fn cert_toml(name: &str, leaf: &Leaf) -> String {
    format!(
        "[[certificate]]\nname = {}\nchain = {}\nkey = {}\n\n",
        toml_str(name),
        toml_str(&leaf.chain.display().to_string()),
        toml_str(&leaf.key.display().to_string())
    )
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A PKCS#12 file of `leaf` (with its key, PKCS#8 DER) and `others`, written
/// by p12-keystore (AES-256, PBKDF2) with `password`. The `others` come
/// first in the file's bag order, before the leaf: a PFX's order is not the
/// chain's, and the loader must not rely on it.
pub fn pfx_with_others_first(
    leaf: &CertificateDer<'_>,
    key_pkcs8: &[u8],
    others: &[CertificateDer<'_>],
    password: &str,
) -> Vec<u8> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let mut store = KeyStore::new();
    // The writer puts lone certificates before the key's chain.
    for (i, c) in others.iter().enumerate() {
        let cert = Certificate::from_der(c.as_ref()).unwrap();
        store.add_entry(&format!("other{i}"), KeyStoreEntry::Certificate(cert));
    }
    let chain = PrivateKeyChain::new(
        b"leaf".as_slice(),
        PrivateKey::from_der(key_pkcs8).unwrap(),
        [Certificate::from_der(leaf.as_ref()).unwrap()],
    );
    store.add_entry("leaf", KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().unwrap()
}

/// `leaf`'s private key as PKCS#8 DER.
pub fn pkcs8_of(leaf: &Leaf) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(&leaf.key)
        .unwrap()
        .secret_pkcs8_der()
        .to_vec()
}
