//! `config`: TOML text through [`Settings::parse`] (what `snigate run`,
//! `check` and a reload read), as the file `snigate.toml` in a temporary
//! folder that also holds a lab CA and certificates (`ca.crt`,
//! `fallback.crt`/`.key`, `portal.contoso.test.crt`/`.key`, from
//! `snigate::tools::gen_certs`). Every error must have a place inside the text.
//! A configuration that parses is then checked as `snigate check` does
//! ([`snigate::state::check_report`]: certificates, keys, CA and ticket key
//! files read), but only when every file it names is in that folder: the
//! fuzzer must not make the check read arbitrary paths of the machine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use snigate::config::Settings;
use snigate::tools::gen_certs::{generate, KeyAlgorithm};

/// The folder and the configuration path inside it.
pub struct Fixture {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("snigate-fuzz-config-")
            .tempdir()
            .expect("temporary folder");
        generate(
            dir.path(),
            &["portal.contoso.test".to_string()],
            KeyAlgorithm::Ecdsa,
        )
        .expect("lab certificates");
        let path = dir.path().join("snigate.toml");
        Fixture { dir, path }
    }

    pub fn run(&self, data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Settings::parse(&self.path, text) {
            Ok(settings) => {
                let _ = settings.summary();
                if self.confined(&settings) {
                    if let Err(errors) = snigate::state::check_report(&settings) {
                        assert!(!errors.is_empty(), "check failed without a reason");
                    }
                }
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "parse failed without a reason");
                let lines = text.lines().count() + 1;
                for e in &errors.0 {
                    if let Some((line, col)) = e.position {
                        assert!(
                            line >= 1 && line <= lines && col >= 1,
                            "error at {line}:{col} outside the text: {e}"
                        );
                    }
                }
                let _ = errors.to_string();
            }
        }
    }

    /// Every file the check would read is directly in the fixture's folder.
    fn confined(&self, settings: &Settings) -> bool {
        let inside = |p: &Path| p.parent() == Some(self.dir.path());
        settings
            .certificates
            .iter()
            .all(|c| c.source.files().into_iter().all(inside))
            && settings
                .upstreams
                .iter()
                .filter_map(|u| u.tls.as_ref()?.ca.as_deref())
                .all(inside)
            && settings
                .listeners
                .iter()
                .filter_map(|l| l.session_ticket_keys.as_deref())
                .all(inside)
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
