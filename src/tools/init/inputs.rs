//! The inputs of `snigate init`, checked: host names by the rules of the
//! configuration's `hosts` (and of `snigate gen-certs`, which the file's
//! header tells the operator to run with them), servers as `host:port`,
//! and where the file goes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path};

/// Most `--host` names (the iis profile gives each an address of its own).
const MAX_HOSTS: usize = 64;
/// Most `--backend` servers.
const MAX_BACKENDS: usize = 64;

/// One `--host`: a name clients use, as the configuration compares it
/// (lower case, no trailing dot); `*.` only as the whole first label.
pub fn host(raw: &str) -> Result<String, String> {
    let name = crate::config::host_pattern(raw).map_err(|e| format!("--host {e}"))?;
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "--host \"{raw}\" is an IP address: give the names clients use (the certificate and the routes are for names)"
        ));
    }
    // The header's `snigate gen-certs --names` must accept it too.
    crate::tools::gen_certs::validate_name(&name).map_err(|e| format!("--host {e}"))?;
    Ok(name)
}

/// One `--backend`: `IP:port`, `[IPv6]:port` or `name:port`, port 1-65535.
pub fn backend(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let bad = |why: &str| {
        format!("--backend \"{raw}\" is not host:port ({why}; e.g. 10.0.0.21:443 or wfe1.contoso.com:80)")
    };
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(bad("port 0"));
        }
        return Ok(addr.to_string());
    }
    let Some((name, port)) = s.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(bad(&format!("\"{port}\" is not a port number"))),
    }
    if name.contains(':') || name.starts_with('[') {
        return Err(bad("an IPv6 address goes in brackets: [2001:db8::21]:443"));
    }
    if name.parse::<IpAddr>().is_ok() {
        // An IPv4 address with a port that SocketAddr refused: cannot be.
        return Err(bad("not an address"));
    }
    match crate::config::host_pattern(name) {
        Ok(h) if !h.starts_with("*.") => Ok(format!("{h}:{port}")),
        _ => Err(bad(&format!("\"{name}\" is not a host name"))),
    }
}

/// Every `--host`, each error in `errors`.
pub(super) fn hosts(raw: &[String], errors: &mut Vec<String>) -> Vec<String> {
    checked_list(raw, "--host", MAX_HOSTS, host, errors)
}

/// Every `--backend`, each error in `errors`.
pub(super) fn backends(raw: &[String], errors: &mut Vec<String>) -> Vec<String> {
    checked_list(raw, "--backend", MAX_BACKENDS, backend, errors)
}

/// The entries of a comma-separated option, each checked by `check`, no
/// entry twice, at least one and at most `max`.
fn checked_list(
    raw: &[String],
    option: &str,
    max: usize,
    check: fn(&str) -> Result<String, String>,
    errors: &mut Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let entries = raw.iter().flat_map(|r| r.split(','));
    for entry in entries {
        if entry.trim().is_empty() {
            errors.push(format!("{option}: an empty entry (two commas in a row?)"));
            continue;
        }
        match check(entry) {
            Ok(v) if out.contains(&v) => errors.push(format!("{option} {v} is given twice")),
            Ok(v) => out.push(v),
            Err(e) => errors.push(e),
        }
    }
    if raw.is_empty() {
        errors.push(format!("{option}: give at least one"));
    }
    if out.len() > max {
        errors.push(format!("{option}: at most {max} (got {})", out.len()));
    }
    out
}

/// From the folder of the output file to the current folder, where
/// `snigate gen-certs` makes the certificates the file names: `"../"` for
/// `config/x.toml`, `""` for `x.toml`, the current folder itself (absolute)
/// when the output is absolute or goes through `..`.
pub(super) fn to_start_folder(output: &Path) -> Result<String, String> {
    let shown = output.to_string_lossy();
    if shown.chars().any(char::is_control) {
        return Err(format!("-o {shown:?}: a file name with control characters"));
    }
    if output.file_name().is_none() {
        return Err(format!("-o {shown}: not a file name"));
    }
    let folder = output.parent().unwrap_or(Path::new(""));
    let mut depth = 0;
    for c in folder.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return absolute_start(),
        }
    }
    Ok("../".repeat(depth))
}

/// The current folder as an absolute path ending in `/`.
fn absolute_start() -> Result<String, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot tell the current folder: {e}"))?;
    let mut s = cwd.to_string_lossy().into_owned();
    if !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

/// `word` as one word for a POSIX shell: as is when that is safe, else in
/// single quotes.
pub(super) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:,=+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_the_configuration_rules() {
        assert_eq!(host("Mail.Contoso.TEST.").unwrap(), "mail.contoso.test");
        assert_eq!(host("*.apps.contoso.test").unwrap(), "*.apps.contoso.test");
        for bad in [
            "",
            "mail..test",
            "a b.test",
            "*.test",
            "mail.*.test",
            "10.0.0.1",
            "-a.test",
        ] {
            assert!(host(bad).is_err(), "{bad:?} accepted");
        }
        assert!(host("bad_host!")
            .unwrap_err()
            .contains("is not a host name"));
    }

    #[test]
    fn backends_are_host_port() {
        assert_eq!(backend("10.0.0.21:443").unwrap(), "10.0.0.21:443");
        assert_eq!(backend("[2001:db8::21]:443").unwrap(), "[2001:db8::21]:443");
        assert_eq!(
            backend("WFE1.contoso.com:80").unwrap(),
            "wfe1.contoso.com:80"
        );
        for bad in [
            "10.0.0.21",
            "10.0.0.21:0",
            "wfe1:http",
            ":80",
            "2001:db8::21:443",
            "*.a.test:80",
            "a b:80",
        ] {
            assert!(backend(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lists_report_every_mistake() {
        let mut errors = Vec::new();
        let got = hosts(
            &["a.test,b.test".into(), "A.test".into(), "x!".into()],
            &mut errors,
        );
        assert_eq!(got, ["a.test", "b.test"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn the_start_folder_seen_from_the_file() {
        assert_eq!(to_start_folder(Path::new("x.toml")).unwrap(), "");
        assert_eq!(to_start_folder(Path::new("./x.toml")).unwrap(), "");
        assert_eq!(to_start_folder(Path::new("config/x.toml")).unwrap(), "../");
        assert_eq!(to_start_folder(Path::new("a/b/x.toml")).unwrap(), "../../");
        assert!(to_start_folder(Path::new("/etc/snigate/x.toml"))
            .unwrap()
            .starts_with('/'));
        assert!(to_start_folder(Path::new("a\nb.toml")).is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("config/exchange.toml"), "config/exchange.toml");
        assert_eq!(shell_word("my file.toml"), "'my file.toml'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
