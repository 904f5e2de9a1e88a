//! `snigate demo`, first contact: the configuration it runs starts without
//! a warning, and every command it prints runs as printed from the
//! repository root. The demo's proxy binds fixed addresses (8443, 9900), so
//! these tests use its parts (`demo::prepare`, which writes the same files
//! and starts the same sample applications on system-chosen ports, and
//! `demo::instructions`) without starting the proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use snigate::state::check_report;
use snigate::tools::demo::{command_path, instructions, prepare, DEMO_HELLO};

use crate::common::bounded;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What `snigate demo` logs about its own configuration at start: the
/// settings not active in this version, upstream TLS and session ticket
/// notes, and the certificate hygiene warnings (`fallback_uncovered`, ...).
/// `snigate check` reports the same list.
#[tokio::test]
async fn the_demo_configuration_starts_without_a_warning() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let demo = prepare(dir.path()).await.expect("demo files");
        let checked = check_report(&demo.settings).unwrap_or_else(|errors| {
            panic!(
                "the demo configuration does not load: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let warnings: Vec<String> = checked
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.kind.as_str(), w.message))
            .collect();
        assert_eq!(warnings, Vec::<String>::new(), "hygiene warnings at start");
        assert_eq!(checked.notes, Vec::<String>::new(), "notes at start");
        // Still the lab the README describes: two https listeners, the
        // portal and mysites applications.
        let listeners: Vec<&str> = demo
            .settings
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(listeners, ["main", "mysites-ip"]);
    })
    .await;
}

/// The path a printed command names, as the shell in the repository root
/// resolves it.
fn resolve(word: &str) -> PathBuf {
    repo_root().join(word)
}

#[tokio::test]
async fn every_printed_command_names_something_that_runs_from_the_repository_root() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let demo = prepare(dir.path()).await.expect("demo files");
        // The binary cargo built, as the demo names it from the repository
        // root after `cargo run --release -- demo`.
        let exe = Path::new(env!("CARGO_BIN_EXE_snigate"));
        let bin = command_path(exe, repo_root());
        assert!(bin.contains('/'), "{bin}: a bare name is looked up in PATH");
        assert_eq!(
            resolve(&bin).canonicalize().expect("the binary exists"),
            exe.canonicalize().unwrap()
        );
        if exe.starts_with(repo_root().join("target")) {
            assert!(bin.starts_with("target/"), "{bin}");
        }
        let text = instructions(&bin, &demo.ca_cert, &demo.config_path, dir.path());

        let commands: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('('))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(commands.len() >= 10, "{text}");
        let mut ours = 0;
        for words in &commands {
            let line = words.join(" ");
            match words[0] {
                "curl" | "openssl" | "tail" => {}
                first if first == bin => ours += 1,
                other => panic!("{other:?} is not a command to run here: {line}\n{text}"),
            }
            // Every file a command reads exists: the CA, the configuration,
            // the capture (relative to the repository root). The logs are
            // the running proxy's, not created here.
            for pair in words.windows(2) {
                if matches!(pair[0], "--cacert" | "-CAfile" | "-c") {
                    assert!(resolve(pair[1]).is_file(), "{line}");
                }
            }
        }
        assert_eq!(ours, 2, "report and explain: {text}");
        assert!(
            !text.contains("  snigate "),
            "bare `snigate` is not on PATH after cargo run:\n{text}"
        );

        // The explain command, run as printed (it binds nothing and writes
        // nothing, so it can run next to anything).
        let explain = commands
            .iter()
            .find(|w| w.get(1) == Some(&"explain"))
            .expect("an explain command");
        assert_eq!(explain[2], DEMO_HELLO);
        let program = resolve(explain[0]);
        let args: Vec<String> = explain[1..].iter().map(|a| a.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(program)
                .args(args)
                .current_dir(repo_root())
                .stdin(Stdio::null())
                .output()
        })
        .await
        .unwrap()
        .expect("run explain");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{explain:?}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        for listener in ["listener \"main\"", "listener \"mysites-ip\""] {
            assert!(stdout.contains(listener), "{stdout}");
        }
    })
    .await;
}
