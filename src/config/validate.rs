//! Raw TOML to typed [`Settings`], collecting every error with its position.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::raw::*;
use super::*;

mod certificates;
mod globals;
mod legacy_tls;
mod listeners;
mod routes;
mod upstreams;

/// Collects errors against one file.
struct Errors<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let position = span.map(|s| self.lines.line_col(s.start));
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            position,
            message: message.into(),
        });
    }

    fn toml(&mut self, e: toml::de::Error) {
        let message = e.message().trim().to_string();
        self.at(e.span(), message);
    }
}

/// Where each line of a file starts, found once: a position costs a binary
/// search, not a scan from the top (a configuration with 10,000
/// certificates asks for 20,000 positions, one per `chain` and `key`).
struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of each line's first byte; `starts[0]` is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let breaks = text.match_indices('\n').map(|(i, _)| i + 1);
        LineIndex {
            text,
            starts: std::iter::once(0).chain(breaks).collect(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&s| s <= offset);
        let line_start = self.starts[line - 1];
        let col = self
            .text
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }
}

fn de<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, errors: &mut Errors<'_>) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.toml(e);
            None
        }
    }
}

/// Deserializes each element of an array of tables on its own, so that one
/// bad `[[listener]]` does not hide the errors of the next.
fn de_array<T: DeserializeOwned>(
    key: &str,
    value: Spanned<DeValue<'_>>,
    errors: &mut Errors<'_>,
) -> Vec<Spanned<T>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let span = item.span();
                de::<T>(item, errors).map(|v| Spanned::new(span, v))
            })
            .collect(),
        _ => {
            errors.at(
                Some(span),
                format!("`{key}` must be an array of tables: write [[{key}]]"),
            );
            Vec::new()
        }
    }
}

#[derive(Default)]
struct RawConfig {
    runtime: RawRuntime,
    admin: Option<RawAdmin>,
    log: RawLog,
    timeouts: RawTimeouts,
    certificates: Vec<Spanned<RawCertificate>>,
    listeners: Vec<Spanned<RawListener>>,
    routes: Vec<Spanned<RawRoute>>,
    upstreams: Vec<Spanned<RawUpstream>>,
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Settings, ConfigErrors> {
    let mut errors = Errors {
        file: path,
        lines: LineIndex::new(text),
        list: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            errors.toml(e);
        }
        return Err(ConfigErrors(errors.list));
    }
    let mut raw = RawConfig::default();
    for (key, value) in root.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "runtime" => raw.runtime = de(value, &mut errors).unwrap_or_default(),
            "admin" => raw.admin = de(value, &mut errors),
            "log" => raw.log = de(value, &mut errors).unwrap_or_default(),
            "timeouts" => raw.timeouts = de(value, &mut errors).unwrap_or_default(),
            "certificate" => raw.certificates = de_array("certificate", value, &mut errors),
            "listener" => raw.listeners = de_array("listener", value, &mut errors),
            "route" => raw.routes = de_array("route", value, &mut errors),
            "upstream" => raw.upstreams = de_array("upstream", value, &mut errors),
            other => errors.at(
                Some(key_span),
                format!(
                    "unknown section `{other}`, expected one of `runtime`, `admin`, `log`, \
                     `timeouts`, `certificate`, `listener`, `route`, `upstream`"
                ),
            ),
        }
    }
    let settings = build(path, raw, &mut errors);
    if errors.list.is_empty() {
        Ok(settings)
    } else {
        errors.list.sort_by_key(|e| e.position);
        Err(ConfigErrors(errors.list))
    }
}

fn duration(
    value: &Option<Spanned<String>>,
    default: Duration,
    errors: &mut Errors<'_>,
) -> Duration {
    optional_duration(value, errors).unwrap_or(default)
}

/// A positive duration, if given and valid (else the error is noted).
fn optional_duration(value: &Option<Spanned<String>>, errors: &mut Errors<'_>) -> Option<Duration> {
    let v = value.as_ref()?;
    match parse_duration(v.get_ref()) {
        Ok(d) if d.is_zero() => {
            errors.at(
                Some(v.span()),
                format!("\"{}\" is zero; a timeout must be positive", v.get_ref()),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errors.at(Some(v.span()), e);
            None
        }
    }
}

/// A JSON-lines log path: `"-"` stays `-` (standard output), anything else
/// is resolved like every path.
fn log_path(base: &Path, p: &str) -> PathBuf {
    if p.trim() == STDOUT {
        PathBuf::from(STDOUT)
    } else {
        resolve(base, p)
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A host name as written in `hosts`/`names`: lower-cased, `*.` only as the
/// first label.
pub(crate) fn host_pattern(host: &str) -> Result<String, String> {
    let h = crate::config::host_name(host.trim());
    let body = h.strip_prefix("*.").unwrap_or(&h);
    let valid = !body.is_empty()
        && h.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(h)
    } else {
        Err(format!(
            "\"{host}\" is not a host name (a wildcard may only be a leading \"*.\")"
        ))
    }
}

fn unique_name(
    name: &Spanned<String>,
    kind: &str,
    seen: &mut HashSet<String>,
    errors: &mut Errors<'_>,
) {
    if name.get_ref().trim().is_empty() {
        errors.at(Some(name.span()), format!("{kind} name must not be empty"));
    } else if !seen.insert(name.get_ref().clone()) {
        errors.at(
            Some(name.span()),
            format!("duplicate {kind} name \"{}\"", name.get_ref()),
        );
    }
}

/// The typed settings, section by section: each section is checked against
/// the ones before it (listeners name certificates and upstreams, routes name
/// upstreams and listeners).
fn build(path: &Path, raw: RawConfig, errors: &mut Errors<'_>) -> Settings {
    let base = base_dir_of(path);
    let mut inactive = Vec::new();
    let admin = globals::admin(raw.admin, errors);
    let log = globals::log(&raw.log, &base, errors);
    let timeouts = globals::timeouts(&raw.timeouts, errors);
    let certificates = certificates::certificates(&raw.certificates, &base, errors);
    let upstreams = upstreams::upstreams(&raw.upstreams, &base, errors);
    let known = listeners::Known::new(&certificates, &upstreams);
    let listeners = listeners::listeners(&raw.listeners, known, &base, errors, &mut inactive);
    let routes = routes::routes(&raw.routes, &upstreams, &listeners, errors);
    routes::proxy_protocol_on_http(&upstreams, &listeners, &routes, &mut inactive);
    routes::paths_on_passthrough(&listeners, &routes, &mut inactive);

    if listeners.is_empty() && errors.list.is_empty() {
        errors.at(None, "no [[listener]]: nothing to serve");
    }

    Settings {
        source: path.to_path_buf(),
        workers: globals::workers(&raw.runtime.workers, errors),
        pid_file: raw.runtime.pid_file.as_deref().map(|p| resolve(&base, p)),
        admin,
        log,
        timeouts,
        certificates,
        listeners,
        routes,
        upstreams,
        inactive,
        read_in: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = LineIndex::new("a\nbc\nd");
        assert_eq!(t.line_col(0), (1, 1));
        assert_eq!(t.line_col(1), (1, 2));
        assert_eq!(t.line_col(2), (2, 1));
        assert_eq!(t.line_col(3), (2, 2));
        assert_eq!(t.line_col(5), (3, 1));
        assert_eq!(t.line_col(99), (3, 2));
        let wide = LineIndex::new("é\nxé y");
        assert_eq!(wide.line_col(7), (2, 4));
    }

    #[test]
    fn health_expect_status_must_be_an_http_status() {
        let text = "[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:1\"]\nmode = \"http\"\n\
                    default_upstream = \"u\"\n[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:2\"]\n\
                    health = { expect_status = 20 }\n";
        let errors = parse(Path::new("x.toml"), text).unwrap_err().to_string();
        assert!(
            errors.contains("expect_status 20 is not an HTTP status"),
            "{errors}"
        );
        let ok = text.replace("expect_status = 20", "expect_status = 204");
        assert!(parse(Path::new("x.toml"), &ok).is_ok());
    }

    #[test]
    fn workers_above_the_limit_are_refused_with_their_line() {
        let text = "[runtime]\nworkers = 80000\n[[listener]]\nname = \"m\"\n\
                    bind = [\"127.0.0.1:1\"]\nmode = \"http\"\ndefault_upstream = \"u\"\n\
                    [[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:2\"]\n";
        let errors = parse(Path::new("x.toml"), text).unwrap_err().to_string();
        assert!(
            errors
                .contains("x.toml:2:11: workers = 80000 is more than 1024; use 0 for one per CPU"),
            "{errors}"
        );
        let at_limit = parse(Path::new("x.toml"), &text.replace("80000", "1024")).unwrap();
        assert_eq!(at_limit.workers, 1024);
        let unset = parse(Path::new("x.toml"), &text.replace("workers = 80000\n", "")).unwrap();
        assert_eq!(unset.workers, 0);
    }

    #[test]
    fn upgrade_protocols_are_tokens_and_never_h2c() {
        let text = "[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:1\"]\nmode = \"http\"\n\
                    default_upstream = \"u\"\nupgrade_protocols = [\"websocket\", \"H2C\"]\n\
                    [[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:2\"]\n";
        let errors = parse(Path::new("x.toml"), text).unwrap_err().to_string();
        assert!(
            errors.contains("upgrade_protocols: \"H2C\" is never passed"),
            "{errors}"
        );
        let listed = |list: &str| {
            let t = text.replace("\"websocket\", \"H2C\"", list);
            parse(Path::new("x.toml"), &t).map(|s| s.listeners[0].upgrade_protocols.clone())
        };
        assert_eq!(
            listed("\"WebSocket\", \"x-custom\"").unwrap(),
            ["websocket", "x-custom"]
        );
        assert_eq!(listed("").unwrap(), Vec::<String>::new());
        let default = text.replace("upgrade_protocols = [\"websocket\", \"H2C\"]\n", "");
        let settings = parse(Path::new("x.toml"), &default).unwrap();
        assert_eq!(settings.listeners[0].upgrade_protocols, ["websocket"]);
        for bad in ["\"h2\"", "\"HTTP\"", "\"websocket/13\"", "\"\"", "\"a b\""] {
            assert!(listed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            host_pattern("Portal.Contoso.TEST.").unwrap(),
            "portal.contoso.test"
        );
        assert_eq!(host_pattern("*.apps.test").unwrap(), "*.apps.test");
        assert!(host_pattern("a.*.test").is_err());
        assert!(host_pattern("").is_err());
        assert!(host_pattern("a b").is_err());
    }
}
