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
        chain: resolve(base, c.chain.get_ref()),
        key: resolve(base, c.key.get_ref()),
        names,
        chain_at: Some(line_col(errors.text, c.chain.span().start)),
        key_at: Some(line_col(errors.text, c.key.span().start)),
    }
}
