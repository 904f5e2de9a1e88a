//! `[[certificate]]` sections.

use super::*;

/// Every `[[certificate]]`: names unique, paths resolved against `base`.
pub(super) fn certificates(
    raw: &[Spanned<RawCertificate>],
    base: &Path,
    errors: &mut Errors<'_>,
) -> Vec<CertificateSettings> {
    let mut seen = HashSet::new();
    let mut certificates = Vec::new();
    for c in raw {
        let c = c.get_ref();
        unique_name(&c.name, "certificate", &mut seen, errors);
        certificates.push(certificate(c, base, errors));
    }
    certificates
}

/// One `[[certificate]]`, its explicit `names` checked as host names.
fn certificate(c: &RawCertificate, base: &Path, errors: &mut Errors<'_>) -> CertificateSettings {
    let names = c.names.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|n| {
                host_pattern(n)
                    .map_err(|e| {
                        errors.at(
                            Some(c.name.span()),
                            format!("certificate \"{}\": {e}", c.name.get_ref()),
                        )
                    })
                    .ok()
            })
            .collect::<Vec<_>>()
    });
    CertificateSettings {
        name: c.name.get_ref().clone(),
        source: source(c, base, errors),
        names,
    }
}

/// `chain` + `key`, or `pfx` (+ `pfx_password_file`): exactly one of the two
/// forms. On an error the source returned is a placeholder (the settings are
/// refused anyway).
fn source(c: &RawCertificate, base: &Path, errors: &mut Errors<'_>) -> CertificateSource {
    let at = |errors: &Errors<'_>, v: &Spanned<String>| Some(errors.lines.line_col(v.span().start));
    let name = c.name.get_ref();
    let pem = |errors: &Errors<'_>, chain: &Spanned<String>, key: &Spanned<String>| {
        CertificateSource::Pem {
            chain: resolve(base, chain.get_ref()),
            key: resolve(base, key.get_ref()),
            chain_at: at(errors, chain),
            key_at: at(errors, key),
        }
    };
    match (&c.chain, &c.key, &c.pfx) {
        (Some(chain), Some(key), None) => {
            if let Some(p) = &c.pfx_password_file {
                errors.at(
                    Some(p.span()),
                    format!(
                        "certificate \"{name}\": pfx_password_file is the password of a pfx file; \
                         with chain and key (PEM) remove it"
                    ),
                );
            }
            pem(errors, chain, key)
        }
        (None, None, Some(pfx)) => CertificateSource::Pfx {
            file: resolve(base, pfx.get_ref()),
            password_file: c
                .pfx_password_file
                .as_ref()
                .map(|p| resolve(base, p.get_ref())),
            at: at(errors, pfx),
            password_at: c.pfx_password_file.as_ref().and_then(|p| at(errors, p)),
        },
        (chain, key, Some(pfx)) => {
            let both = chain.as_ref().or(key.as_ref()).unwrap_or(pfx);
            errors.at(
                Some(both.span()),
                format!(
                    "certificate \"{name}\": give either pfx (with pfx_password_file) or chain and key, \
                     not both"
                ),
            );
            placeholder(base)
        }
        (Some(only), None, None) | (None, Some(only), None) => {
            let missing = if c.chain.is_none() { "chain" } else { "key" };
            errors.at(
                Some(only.span()),
                format!(
                    "certificate \"{name}\": {missing} is missing (PEM needs both chain and key; \
                     for a .pfx write pfx = \"FILE.pfx\" instead)"
                ),
            );
            placeholder(base)
        }
        (None, None, None) if c.pfx_password_file.is_some() => {
            let p = c.pfx_password_file.as_ref().map(Spanned::span);
            errors.at(
                p,
                format!(
                    "certificate \"{name}\": pfx_password_file without pfx: add \
                     pfx = \"FILE.pfx\", the file it is the password of"
                ),
            );
            placeholder(base)
        }
        (None, None, None) => {
            errors.at(
                Some(c.name.span()),
                format!(
                    "certificate \"{name}\": no certificate file: write pfx = \"FILE.pfx\" \
                     (with pfx_password_file = \"FILE.pass\" when it has a password), or chain = \
                     \"FILE.crt\" and key = \"FILE.key\" (PEM)"
                ),
            );
            placeholder(base)
        }
    }
}

fn placeholder(base: &Path) -> CertificateSource {
    CertificateSource::Pem {
        chain: base.to_path_buf(),
        key: base.to_path_buf(),
        chain_at: None,
        key_at: None,
    }
}
