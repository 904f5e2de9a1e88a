//! snigate: a TLS-terminating, SNI-aware reverse proxy for web farms whose
//! clients do not all send SNI.
//!
//! Data flows one way: [`accept`] -> [`hello`] -> [`tls`] -> [`proxy`]
//! (HTTP) -> [`route`] -> [`upstream`], with [`config`] and [`telemetry`]
//! beside them. [`server::Proxy`] starts the whole thing in-process.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod balance;
pub mod body;
pub mod certs;
pub mod config;
pub mod connection;
pub mod demo;
pub mod diagnose;
pub mod explain;
pub mod fingerprint;
pub mod gen_certs;
pub mod head_timer;
pub mod health;
pub mod hello;
pub mod hygiene;
pub mod import_iis;
pub mod legacy;
#[cfg(feature = "legacy-tls")]
pub mod legacy_tls;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod proxy_protocol;
pub mod refusal_log;
pub mod replay;
pub mod report;
pub mod request_checks;
pub mod request_host;
pub mod request_line;
pub mod route;
pub mod server;
pub mod source_limit;
pub mod splice;
pub mod state;
pub mod telemetry;
pub mod tickets;
pub mod tls;
pub mod upstream;
pub mod upstream_tls;
