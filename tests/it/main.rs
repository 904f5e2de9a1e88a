//! The integration tests, one module per feature, as one test binary (one
//! link of tokio, rustls, hyper and aws-lc instead of one per file). Tests
//! that need a process of their own are in tests/solo/.
//!
//! Run one module: `cargo test --release --test it reload::`.

mod common;

mod admin_security;
mod against;
mod auth_binding;
mod balance;
mod catalogue;
mod certs_load;
mod config_examples;
mod connection_limits;
mod deadlines;
mod decision;
mod demo;
mod deploy;
mod diagnosis;
mod explain;
mod external_clients;
mod failover;
mod farm_safety;
mod fd_exhaustion;
mod fingerprint;
mod fuzz_corpus;
mod grafana;
mod header_case;
mod hello_captures;
mod http_proxy;
mod hygiene;
mod import_iis;
mod init;
mod layers;
mod legacy;
#[cfg(feature = "legacy-tls")]
mod legacy_tls;
mod legacy_tls_config;
mod logs;
mod long_lived;
mod metrics;
mod ntlm_affinity;
mod one_host;
mod passthrough;
mod path_routes;
mod pfx;
mod proxy_protocol;
mod real_hellos;
mod reload;
mod report;
mod report_offline;
mod report_page;
mod report_scale;
mod resumption;
mod robustness;
mod route_timeouts;
mod scale;
mod service_health;
mod shared_port;
mod smuggling;
mod tls_selection;
mod upstream_tls;
mod workers;
