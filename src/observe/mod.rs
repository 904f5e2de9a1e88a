//! What snigate tells an operator: the human and JSON-lines logs, metrics,
//! the compatibility report, and rate-limited refusal summaries.

pub(crate) mod borrowed_key;
pub mod catalogue;
pub mod handshake_log;
pub mod hello_details;
pub mod hellos_seen;
pub mod log_lines;
pub mod metrics;
pub mod outcome;
pub mod refusal_log;
pub mod report;
pub mod telemetry;
pub mod terminal;
