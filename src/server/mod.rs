//! The process: start, reload and stop (`process`, re-exported here), the
//! accept loops, and the admin endpoint.

pub mod accept;
pub mod admin;
pub mod health_checks;
pub mod process;

pub use process::*;
