//! Replays the fuzzing corpus on stable: every file in `fuzz/corpus/<target>/`
//! through the same function the cargo-fuzz target calls, from
//! `fuzz/harness/` (see "Fuzzing" in the README). Inputs run in name order;
//! a failure names the file. An input that made a fuzzer fail is kept in the
//! corpus as `crash-<what>`; while its bug is open it is listed in
//! [`KNOWN_BUGS`]. Every wait in the harness is bounded, and each target
//! must finish within [`LIMIT`].

// The fuzz binaries use each target's `fuzz` (one fixture per process);
// these tests make and drop their own fixtures, so some items go unused here.
#[allow(dead_code)]
#[path = "../../fuzz/harness/mod.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upper bound for replaying one target's corpus.
const LIMIT: Duration = Duration::from_secs(120);

/// Bugs the fuzzers found that are not fixed yet: (target, a fragment of
/// the failure's message, the corpus file that shows it, what is wrong).
/// An input that fails with such a message does not fail the replay, but
/// the named file must still fail with it: once the bug is fixed, this test
/// says to remove its entry, and the input guards against a regression.
const KNOWN_BUGS: &[(&str, &str, &str, &str)] = &[];

/// The corpus of `target`, sorted by path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

/// Runs `body` on every input of `target`: each must pass, or fail with the
/// message of one of the [`KNOWN_BUGS`].
fn replay(target: &str, body: impl Fn(&[u8])) {
    assert!(
        harness::TARGETS.contains(&target),
        "unknown target {target}"
    );
    let known: Vec<_> = KNOWN_BUGS.iter().filter(|k| k.0 == target).collect();
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "fuzz/corpus/{target}/ is empty");
    let start = Instant::now();
    let mut seen = Vec::new();
    for (path, data) in &inputs {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let failure = catch_unwind(AssertUnwindSafe(|| body(data)))
            .err()
            .map(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into())
            });
        let bug = failure
            .as_deref()
            .and_then(|f| known.iter().find(|k| f.contains(k.1)));
        match (&failure, bug) {
            (None, _) => {}
            (Some(_), Some(bug)) => seen.push((bug.2, name.to_string())),
            (Some(what), None) => panic!("{target}: {} fails: {what}", path.display()),
        }
    }
    for (_, fragment, file, what) in &known {
        assert!(
            seen.iter().any(|(f, name)| f == file && name == file),
            "{target}: fuzz/corpus/{target}/{file} no longer fails with \"{fragment}\": \
             if this is fixed ({what}), remove it from KNOWN_BUGS in tests/it/fuzz_corpus.rs"
        );
    }
    let elapsed = start.elapsed();
    eprintln!(
        "{target}: {} inputs in {elapsed:?}, {} of them failing with a known bug",
        inputs.len(),
        seen.len()
    );
    assert!(
        elapsed < LIMIT,
        "{target}: {} inputs took {elapsed:?}",
        inputs.len()
    );
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    let here = include_str!("fuzz_corpus.rs");
    for target in harness::TARGETS {
        assert!(
            here.contains(&format!("fn {target}()")),
            "no replay test for {target}"
        );
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        assert!(corpus.is_dir(), "{} is missing", corpus.display());
    }
}

#[test]
fn client_hello() {
    replay("client_hello", harness::client_hello::fuzz);
}

#[test]
fn proxy_protocol() {
    replay("proxy_protocol", harness::proxy_protocol::fuzz);
}

#[test]
fn proxy_protocol_read() {
    replay("proxy_protocol_read", harness::proxy_protocol_read::fuzz);
}

#[test]
fn config() {
    let fixture = harness::config::Fixture::new();
    replay("config", |data| fixture.run(data));
}

#[test]
fn import_iis() {
    replay("import_iis", harness::import_iis::fuzz);
}

#[test]
fn explain() {
    let fixture = harness::explain::Fixture::new();
    replay("explain", |data| fixture.run(data));
}

#[test]
fn http1() {
    let fixture = harness::http1::Fixture::new();
    replay("http1", |data| fixture.run(data));
    fixture.alive();
}
