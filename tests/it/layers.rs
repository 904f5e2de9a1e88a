//! The layers of `src/` (README, "Architecture"): code in a folder imports
//! only from itself and the layers below it. A `crate::` path in code (not
//! in a comment) that names a higher layer fails, with its file and line.

use std::path::{Path, PathBuf};

/// From the bottom up, as the README lists them.
const LAYERS: &[&str] = &[
    "sync",
    "config",
    "observe",
    "io",
    "tls",
    "route",
    "upstream",
    "state",
    "conn",
    "http",
    "passthrough",
    "frontend",
    "server",
    "tools",
];

fn rank(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers named by `crate::NAME` paths in one line of code.
fn imported_layers(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn no_import_goes_up_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let Some(own) = rank(top.trim_end_matches(".rs")) else {
            continue; // lib.rs, main.rs
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for layer in imported_layers(line) {
                if rank(layer).is_some_and(|r| r > own) {
                    wrong.push(format!("src/{}:{}: imports {layer}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(files.len() > 40, "src/ not found: {}", src.display());
    assert!(
        wrong.is_empty(),
        "imports that go up a layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_that_goes_up() {
    assert_eq!(
        imported_layers("use crate::http::proxy; // crate::tools"),
        ["http"]
    );
    assert_eq!(imported_layers("/// [`crate::server`]"), Vec::<&str>::new());
}
