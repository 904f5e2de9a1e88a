//! The example configurations in `config/` stay valid.
//!
//! Each file is copied into a temporary folder with the layout it expects
//! (`config/FILE` next to `certs/...`), the lab certificates it needs are
//! generated with the `snigate gen-certs` commands written in its own comments,
//! and then the library and the `snigate check` command must both accept it.
//! Broken copies (an unknown key, a bad duration, a fallback certificate that
//! names nothing) must be refused with `FILE:LINE:COL: message` errors that
//! point at the right line.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use snigate::config::Settings;
use snigate::state::State;
use snigate::tools::gen_certs::{generate, KeyAlgorithm};
use tempfile::TempDir;

/// Every `*.toml` in the repository's `config/` folder, sorted.
fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// A `snigate gen-certs` command found in a configuration's comments.
#[derive(Debug)]
struct GenCerts {
    dir: String,
    names: Vec<String>,
    key: KeyAlgorithm,
}

/// The `snigate gen-certs --dir DIR --names A,B [--key K]` commands that a
/// configuration's comments tell the operator to run (from the repository
/// root).
fn gen_certs_commands(text: &str) -> Vec<GenCerts> {
    let mut found = Vec::new();
    for line in text.lines() {
        let Some(comment) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let Some(args) = comment.trim().strip_prefix("snigate gen-certs ") else {
            continue;
        };
        let words: Vec<&str> = args.split_whitespace().collect();
        let value = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .map(|v| v.to_string())
        };
        let dir = value("--dir").unwrap_or_else(|| panic!("no --dir in: {line}"));
        let names = value("--names").unwrap_or_else(|| panic!("no --names in: {line}"));
        let key = value("--key")
            .map(|k| k.parse().expect("--key"))
            .unwrap_or_default();
        found.push(GenCerts {
            dir,
            names: names.split(',').map(str::to_string).collect(),
            key,
        });
    }
    found
}

/// A copy of `example` at `TMP/config/NAME` with its lab certificates
/// generated under `TMP` as its comments say. Returns the folder (kept alive
/// by the caller) and the copy's path.
fn stage(example: &Path) -> (TempDir, PathBuf) {
    let text = fs::read_to_string(example).expect("read example");
    stage_text(example, &text)
}

fn stage_text(example: &Path, text: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config_dir = tmp.path().join("config");
    fs::create_dir_all(&config_dir).expect("create config dir");
    let commands = gen_certs_commands(text);
    assert!(
        !commands.is_empty(),
        "{}: no `snigate gen-certs` command in its comments",
        example.display()
    );
    for c in &commands {
        generate(&tmp.path().join(&c.dir), &c.names, c.key)
            .unwrap_or_else(|e| panic!("{}: gen-certs {c:?}: {e}", example.display()));
    }
    let path = config_dir.join(example.file_name().expect("file name"));
    fs::write(&path, text).expect("write copy");
    (tmp, path)
}

fn snigate_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snigate"))
        .arg("check")
        .arg("-c")
        .arg(path)
        .output()
        .expect("run snigate check")
}

#[test]
fn the_documented_examples_exist() {
    let names: Vec<String> = example_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in ["snigate.toml", "sharepoint-farm.toml"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "config/{wanted} is missing"
        );
    }
}

#[test]
fn every_example_loads_and_checks_without_notes() {
    for example in example_files() {
        let (_tmp, path) = stage(&example);
        let settings = Settings::load(&path)
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", example.display()));
        let notes = snigate::state::check(&settings).unwrap_or_else(|errors| {
            panic!("{} fails check:\n{}", example.display(), errors.join("\n"))
        });
        assert!(
            notes.is_empty(),
            "{}: check notes (inactive settings or uncovered hosts):\n{}",
            example.display(),
            notes.join("\n")
        );
        assert!(
            settings.inactive.is_empty(),
            "{}: {:?}",
            example.display(),
            settings.inactive
        );
    }
}

#[test]
fn snigate_check_accepts_every_example_with_one_line() {
    for example in example_files() {
        let (_tmp, path) = stage(&example);
        let out = snigate_check(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: stdout:\n{stdout}\nstderr:\n{stderr}",
            example.display()
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{}: {stdout}", example.display());
        let expected_start = format!("{}: ok: ", path.display());
        assert!(
            lines[0].starts_with(&expected_start),
            "{}: {}",
            example.display(),
            lines[0]
        );
        assert!(lines[0].contains("listener(s)"), "{}", lines[0]);
        assert!(stderr.is_empty(), "{}: stderr: {stderr}", example.display());
    }
}

/// The default configuration: what the README's sample describes.
#[test]
fn default_config_matches_the_design_sample() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/snigate.toml");
    let (_tmp, path) = stage(&example);
    let s = Settings::load(&path).expect("load");
    assert_eq!(s.admin, Some("127.0.0.1:9900".parse().unwrap()));
    assert_eq!(s.timeouts, snigate::config::Timeouts::default());
    let main = s.listener("main").expect("listener main");
    assert_eq!(main.bind, vec!["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(main.fallback_certificate.as_deref(), Some("farm"));
    assert_eq!(main.default_upstream.as_deref(), Some("portal"));
    assert_eq!(
        (main.max_connections, main.max_connections_per_ip),
        (10_000, 1_000)
    );
    let farm = &s.certificates[0];
    assert_eq!(farm.name, "farm");
    assert!(farm
        .source
        .chain_file()
        .ends_with("certs/demo/fallback.crt"));

    let state = State::build(s).expect("state");
    let farm = state
        .certificates
        .get(state.certificates.by_name("farm").unwrap());
    for host in [
        "portal.contoso.test",
        "x.apps.contoso.test",
        "mysites.contoso.test",
    ] {
        assert!(farm.covers(host), "farm does not cover {host}");
    }
    let main = &state.listeners[0];
    let upstream_of = |host: &str| {
        let id = main
            .routes
            .route(Some(host), Some("/"))
            .expect("routed")
            .upstream();
        state.upstream(id).name.clone()
    };
    assert_eq!(upstream_of("portal.contoso.test"), "portal");
    assert_eq!(upstream_of("a.b.apps.contoso.test"), "portal");
    assert_eq!(upstream_of("mysites.contoso.test"), "mysites");
    assert_eq!(upstream_of("unknown.test"), "portal");
}

/// The SharePoint example does what its comments and the README say.
#[test]
fn sharepoint_example_routes_and_certificates() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sharepoint-farm.toml");
    let (_tmp, path) = stage(&example);
    let s = Settings::load(&path).expect("load");
    let wfes = vec!["10.0.0.11:80".to_string(), "10.0.0.12:80".to_string()];
    for u in &s.upstreams {
        assert_eq!(u.servers, wfes, "upstream {}", u.name);
    }
    let state = State::build(s).expect("state");
    let cert = |name: &str| {
        state
            .certificates
            .get(state.certificates.by_name(name).unwrap())
    };
    for host in [
        "portal.contoso.test",
        "mysites.contoso.test",
        "teams.contoso.test",
    ] {
        assert!(cert("farm").covers(host), "farm does not cover {host}");
    }
    assert!(!cert("farm").covers("extranet.fabrikam.test"));
    assert!(cert("extranet").covers("extranet.fabrikam.test"));

    let listener = |name: &str| {
        state
            .listeners
            .iter()
            .find(|l| l.settings.name == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
    };
    let fallback_name = |name: &str| {
        let id = listener(name).fallback.expect("fallback");
        state.certificates.get(id).name.clone()
    };
    assert_eq!(fallback_name("main"), "farm");
    assert_eq!(fallback_name("extranet"), "extranet");

    let upstream_of = |l: &str, host: Option<&str>| {
        let id = listener(l)
            .routes
            .route(host, Some("/"))
            .expect("routed")
            .upstream();
        state.upstream(id).name.clone()
    };
    assert_eq!(upstream_of("main", Some("portal.contoso.test")), "portal");
    assert_eq!(upstream_of("main", Some("teams.contoso.test")), "portal");
    assert_eq!(upstream_of("main", Some("mysites.contoso.test")), "mysites");
    assert_eq!(upstream_of("main", None), "portal");
    assert_eq!(
        upstream_of("extranet", Some("extranet.fabrikam.test")),
        "extranet"
    );
    assert_eq!(
        upstream_of("extranet", Some("portal.contoso.test")),
        "extranet"
    );
    assert_eq!(upstream_of("extranet", None), "extranet");
}

/// One deliberate mistake in a copy of an example: where it is expected and
/// what the message says.
struct Breakage {
    line: usize,
    col: usize,
    message: &'static str,
}

/// 1-based line and column of the first `"` on `line` (a value's start).
fn quote_col(line: &str) -> usize {
    line.find('"').expect("a quoted value") + 1
}

/// Whether `line` is the table header `header`, maybe followed by a comment.
fn is_header(line: &str, header: &str) -> bool {
    line.split('#').next().unwrap_or_default().trim() == header
}

/// Inserts `colour = "blue"` right after the `[log]` header.
fn break_unknown_key(lines: &mut Vec<String>) -> Breakage {
    let at = lines
        .iter()
        .position(|l| is_header(l, "[log]"))
        .expect("a [log] section");
    lines.insert(at + 1, "colour = \"blue\"".into());
    Breakage {
        line: at + 2,
        col: 1,
        message: "unknown field `colour`",
    }
}

/// Gives the first timeout in `[timeouts]` a value that is no duration.
fn break_duration(lines: &mut [String]) -> Breakage {
    let start = lines
        .iter()
        .position(|l| is_header(l, "[timeouts]"))
        .expect("a [timeouts] section");
    let at = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i].trim_start();
            !l.starts_with('#') && l.contains('=')
        })
        .expect("a timeout in [timeouts]");
    let key = lines[at].split('=').next().unwrap().trim().to_string();
    lines[at] = format!("{key} = \"10 parsecs\"");
    Breakage {
        line: at + 1,
        col: quote_col(&lines[at]),
        message: "\"10 parsecs\" is not a duration",
    }
}

/// Points the first listener's fallback_certificate at no certificate.
fn break_fallback(lines: &mut [String]) -> Breakage {
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("fallback_certificate"))
        .expect("a fallback_certificate");
    lines[at] = "fallback_certificate = \"nothing-by-this-name\"".into();
    Breakage {
        line: at + 1,
        col: quote_col(&lines[at]),
        message: "fallback_certificate \"nothing-by-this-name\" names no [[certificate]]",
    }
}

/// Applies `breaks` to a staged copy of `example`, then checks that both the
/// library and `snigate check` report exactly those errors at those places.
fn assert_refused(example: &Path, breaks: &[fn(&mut Vec<String>) -> Breakage]) {
    let text = fs::read_to_string(example).expect("read example");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut expected: Vec<Breakage> = Vec::new();
    for b in breaks {
        let before = lines.len();
        let new = b(&mut lines);
        // An inserted line moves the mistakes already made below it.
        if lines.len() > before {
            for e in expected.iter_mut().filter(|e| e.line >= new.line) {
                e.line += lines.len() - before;
            }
        }
        expected.push(new);
    }
    expected.sort_by_key(|e| e.line);
    let (_tmp, path) = stage_text(example, &(lines.join("\n") + "\n"));

    let errors = Settings::load(&path)
        .expect_err("a broken copy must not load")
        .0;
    let got: Vec<(Option<(usize, usize)>, &str)> = errors
        .iter()
        .map(|e| (e.position, e.message.as_str()))
        .collect();
    assert_eq!(
        errors.len(),
        expected.len(),
        "{}: {got:#?}",
        example.display()
    );
    for (e, want) in errors.iter().zip(&expected) {
        assert_eq!(e.file, path);
        assert_eq!(
            e.position,
            Some((want.line, want.col)),
            "{}: {}",
            example.display(),
            e.message
        );
        assert!(
            e.message.contains(want.message),
            "{}: {:?} does not contain {:?}",
            example.display(),
            e.message,
            want.message
        );
    }

    let out = snigate_check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: stderr:\n{stderr}",
        example.display()
    );
    assert!(
        out.stdout.is_empty(),
        "{}: {}",
        example.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "{}: {stderr}",
        example.display()
    );
    let prefix = format!("{}:", path.display());
    for (line, want) in lines.iter().zip(&expected) {
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("not FILE:LINE:COL: message: {line}"));
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts.next().unwrap().parse().expect("LINE");
        let c: usize = parts.next().unwrap().parse().expect("COL");
        let message = parts.next().expect("message");
        assert_eq!((l, c), (want.line, want.col), "{line}");
        assert!(message.starts_with(' '), "{line}");
        assert!(message.contains(want.message), "{line}");
    }
}

#[test]
fn an_unknown_key_is_refused_at_its_line() {
    for example in example_files() {
        assert_refused(&example, &[break_unknown_key]);
    }
}

#[test]
fn a_bad_duration_is_refused_at_its_line() {
    for example in example_files() {
        assert_refused(&example, &[|l| break_duration(l)]);
    }
}

#[test]
fn a_fallback_certificate_naming_nothing_is_refused_at_its_line() {
    for example in example_files() {
        assert_refused(&example, &[|l| break_fallback(l)]);
    }
}

#[test]
fn every_mistake_is_reported_not_only_the_first() {
    for example in example_files() {
        assert_refused(
            &example,
            &[
                |l| break_fallback(l),
                |l| break_duration(l),
                break_unknown_key,
            ],
        );
    }
}
