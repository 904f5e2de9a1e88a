//! `explain`: the contents of a hello file (hex, as Wireshark and SSL Labs
//! write it, or the raw bytes; a record, an SSLv2-format hello or a bare
//! handshake message) through [`snigate::tools::explain::explain_hello`], the core
//! of `snigate explain`: the decode, then the decision of every listener
//! of a configuration (certificate choice, strict refusals, the in-memory
//! rustls handshake, legacy_upstream, passthrough routing), as text and as
//! JSON. The configuration is built once, in a temporary folder, with an
//! ECDSA and an RSA lab certificate.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use snigate::state::State;
use snigate::tools::explain::{explain_hello, load_config};
use snigate::tools::gen_certs::{generate, KeyAlgorithm};

/// Every kind of listener `explain` answers for.
const CONFIG: &str = r#"
[[certificate]]
name = "farm"
chain = "ecdsa/fallback.crt"
key = "ecdsa/fallback.key"

[[certificate]]
name = "farm-rsa"
chain = "rsa/fallback.crt"
key = "rsa/fallback.key"

[[listener]]
name = "main"
bind = ["127.0.0.1:18443"]
fallback_certificate = "farm"
default_upstream = "portal"

[[listener]]
name = "strict"
bind = ["127.0.0.1:18444"]
fallback_certificate = "farm"
strict_sni = true
default_upstream = "portal"

[[listener]]
name = "rsa"
bind = ["127.0.0.1:18447"]
fallback_certificate = "farm-rsa"
default_upstream = "portal"
alpn = ["http/1.1"]

[[listener]]
name = "pt"
bind = ["127.0.0.1:18445"]
mode = "passthrough"
default_upstream = "legacy"

[[listener]]
name = "iis"
bind = ["127.0.0.1:18446"]
fallback_certificate = "farm"
default_upstream = "portal"
legacy_upstream = "legacy"

[[listener]]
name = "plain"
bind = ["127.0.0.1:18080"]
mode = "http"
default_upstream = "portal"

[[route]]
hosts = ["dev.ssllabs.com", "*.apps.contoso.test"]
listeners = ["pt"]
upstream = "ssllabs"

[[upstream]]
name = "portal"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "legacy"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "ssllabs"
servers = ["127.0.0.1:9"]
"#;

/// The configuration's folder, path and loaded state.
pub struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    state: State,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("snigate-fuzz-explain-")
            .tempdir()
            .expect("temporary folder");
        let names = ["portal.contoso.test,*.apps.contoso.test".to_string()];
        for (sub, key) in [("ecdsa", KeyAlgorithm::Ecdsa), ("rsa", KeyAlgorithm::Rsa)] {
            generate(&dir.path().join(sub), &names, key).expect("lab certificates");
        }
        let path = dir.path().join("snigate.toml");
        std::fs::write(&path, CONFIG).expect("write the configuration");
        let state = load_config(&path).unwrap_or_else(|e| panic!("{e:#}"));
        Fixture {
            _dir: dir,
            path,
            state,
        }
    }

    pub fn run(&self, data: &[u8]) {
        let file = Path::new("hello.hex");
        let config = Some((self.path.as_path(), &self.state));
        let text = explain_hello(data, file, config, false);
        let json = explain_hello(data, file, config, true);
        match (&text, &json) {
            (Ok(text), Ok(json)) => {
                assert!(text.contains("\nJA4 "), "no JA4 line in\n{text}");
                assert!(json.starts_with('{') && json.ends_with("}\n"), "{json}");
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("text and JSON disagree: {text:?} / {json:?}"),
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

pub fn fuzz(data: &[u8]) {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new).run(data);
}
