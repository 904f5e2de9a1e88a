//! The tests that need a process of their own; everything else is in the
//! `it` binary (tests/it/). Run them with `cargo test --release --test solo`.
//!
//! - health: installs a global tracing subscriber that captures snigate's
//!   debug log for the whole process, and reads it back;
//! - memory: measures this process's resident set size.

// The helpers of tests/it/common, shared by path. Most go unused here; the
// `it` binary, which uses them all, is where unused ones are caught.
#[allow(dead_code, unused_imports)]
#[path = "../it/common/mod.rs"]
mod common;

mod health;
mod memory;
