//! The process: start, reload and stop (`process`, re-exported here), the
//! accept loops, the worker threads, and the admin endpoint.

pub mod accept;
pub mod admin;
pub mod health_checks;
pub mod process;
pub mod workers;

pub use process::*;
