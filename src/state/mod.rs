//! The runtime state a configuration builds (`runtime`, re-exported here):
//! certificates, TLS configurations, routes, upstreams, logs; and the
//! per-listener connection counts that survive reloads.

pub mod runtime;
pub mod source_limit;

pub use runtime::*;
