//! `import_iis`: the inputs of `snigate import-iis`. The bytes of a file are
//! decoded as the command decodes them ([`input::decode`]: UTF-16 by BOM or
//! shape, else UTF-8), then read both as `netsh http show sslcert` output
//! ([`netsh::parse`]) and as an applicationHost.config
//! ([`site_config::parse`]), and imported alone and beside the other kind
//! of sample from `tests/data/iis/`. Whatever configuration an import
//! writes, the configuration loader must accept it (the property
//! `src/import_iis/mod.rs` tests on cut samples).

use std::path::Path;

use snigate::config::Settings;
use snigate::tools::import_iis::{import, input, netsh, site_config, Source};

const NETSH: &str = include_str!("../../tests/data/iis/netsh-sslcert.txt");
const SITES: &str = include_str!("../../tests/data/iis/applicationHost.config");

pub fn fuzz(data: &[u8]) {
    let text = input::decode(data);
    let _ = netsh::parse(&text);
    let _ = site_config::parse(&text);
    let given = Source::new("input", text);
    let netsh_sample = Source::new("netsh-sslcert.txt", NETSH);
    let sites_sample = Source::new("applicationHost.config", SITES);
    for (netsh, sites) in [
        (Some(&given), None),
        (None, Some(&given)),
        (Some(&given), Some(&sites_sample)),
        (Some(&netsh_sample), Some(&given)),
    ] {
        let Ok(imported) = import(netsh, sites, &["wfe1".to_string()]) else {
            continue;
        };
        if let Err(e) = Settings::parse(Path::new("imported.toml"), &imported.toml) {
            panic!(
                "import-iis wrote a configuration that does not load:\n{e}\n---\n{}",
                imported.toml
            );
        }
    }
}
