//! The body of every fuzz target, shared by the cargo-fuzz binaries in
//! `fuzz/fuzz_targets/` (nightly, libFuzzer) and by `tests/it/fuzz_corpus.rs`,
//! which replays `fuzz/corpus/<target>/` on stable in CI.
//!
//! Each module is one target, named as its folder in `fuzz/corpus/`, with a
//! `fuzz(data)` that the binary calls for each input. A target whose inputs
//! need something set up once (a temporary folder with certificates, a
//! running proxy) has a `Fixture` that owns it: `fuzz` keeps one for the
//! whole process, the replay test makes its own and drops it at the end.
//!
//! A target fails by panicking: on a panic anywhere, or on a property that
//! does not hold (an `assert!`). Every wait is bounded, so an input cannot
//! hang a replay.

pub mod client_hello;
pub mod config;
pub mod explain;
pub mod http1;
pub mod import_iis;
pub mod proxy_protocol;
pub mod proxy_protocol_read;

/// Every target, by name (its folder under `fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "client_hello",
    "proxy_protocol",
    "proxy_protocol_read",
    "config",
    "import_iis",
    "explain",
    "http1",
];

/// A single-threaded tokio runtime for this thread, with the I/O and time
/// drivers, for the targets that drive async code (the ClientHello reader,
/// the PROXY header reader).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
    }
    RUNTIME.with(|rt| rt.block_on(f))
}
