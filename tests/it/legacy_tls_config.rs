//! `legacy_tls = { ... }` on a listener: parsed whether or not snigate was
//! built with the `legacy-tls` feature (configuration files stay portable),
//! and an error, never silently ignored, when it was not.

use std::path::Path;

use snigate::config::Settings;

const BASE: &str = "[[certificate]]\nname = \"c\"\nchain = \"c.crt\"\nkey = \"c.key\"\n\n\
                    [[upstream]]\nname = \"old\"\nservers = [\"10.0.0.1:443\"]\n\n";

fn listener(extra: &str) -> String {
    format!(
        "{BASE}[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:0\"]\n\
         fallback_certificate = \"c\"\n{extra}\n"
    )
}

fn errors(toml: &str) -> String {
    Settings::parse(Path::new("t.toml"), toml)
        .unwrap_err()
        .to_string()
}

#[cfg(not(feature = "legacy-tls"))]
#[test]
fn legacy_tls_without_the_feature_is_an_error() {
    let e = errors(&listener("legacy_tls = { min_version = \"1.0\" }"));
    assert!(
        e.contains(
            "t.toml:14:14: listener \"m\": snigate was built without the legacy-tls feature; \
             rebuild with --features legacy-tls or remove legacy_tls"
        ),
        "{e}"
    );
    // `snigate check` says so and fails.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snigate.toml");
    std::fs::write(&path, listener("legacy_tls = {}")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("snigate was built without the legacy-tls feature"),
        "{text}"
    );
}

#[cfg(feature = "legacy-tls")]
#[test]
fn legacy_tls_with_the_feature_parses_with_its_defaults() {
    use snigate::config::{LegacyTlsVersion, DEFAULT_LEGACY_CIPHERS};
    let s = Settings::parse(Path::new("t.toml"), &listener("legacy_tls = {}")).unwrap();
    let tls = s.listeners[0].legacy_tls.as_ref().unwrap();
    assert_eq!(tls.min_version, LegacyTlsVersion::Tls10);
    assert_eq!(tls.ciphers, DEFAULT_LEGACY_CIPHERS);
    assert!(s.inactive.is_empty(), "{:?}", s.inactive);
}

#[test]
fn legacy_tls_values_are_checked_with_or_without_the_feature() {
    let e = errors(&listener("legacy_tls = { min_version = \"1.3\" }"));
    assert!(
        e.contains("legacy_tls min_version \"1.3\" is not \"1.0\", \"1.1\" or \"1.2\""),
        "{e}"
    );
    let e = errors(&listener("legacy_tls = { ciphers = \" \" }"));
    assert!(e.contains("legacy_tls ciphers must not be empty"), "{e}");
    let e = errors(&listener("legacy_tls = { version = \"1.0\" }"));
    assert!(e.contains("unknown field `version`"), "{e}");
    // Both take the clients rustls cannot serve: one or the other.
    let e = errors(&listener("legacy_upstream = \"old\"\nlegacy_tls = {}"));
    assert!(
        e.contains("legacy_tls and legacy_upstream both take the clients rustls cannot serve"),
        "{e}"
    );
    // Only a listener that terminates TLS can use it.
    let pt = format!(
        "{BASE}[[listener]]\nname = \"p\"\nbind = [\"127.0.0.1:0\"]\nmode = \"passthrough\"\n\
         default_upstream = \"old\"\nlegacy_tls = {{}}\n"
    );
    let e = errors(&pt);
    assert!(
        e.contains("legacy_tls only applies to https listeners"),
        "{e}"
    );
}
