//! snigate: a TLS-terminating, SNI-aware reverse proxy for web farms whose
//! clients do not all send SNI.
//!
//! Folders by layer, from the bottom: [`sync`]; [`config`]; [`observe`] (logs,
//! metrics, report); [`io`]; [`tls`]; [`route`]; [`upstream`]; [`state`];
//! [`conn`]; [`http`]; [`passthrough`]; [`frontend`]; [`server`]; [`tools`].
//! A connection flows [`server::accept`] -> [`frontend::connection`] (hello,
//! certificate, handshake) -> [`http::proxy`] -> [`route`] -> [`upstream`].
//! [`server::Proxy`] starts the whole thing in-process.
#![forbid(unsafe_code)]

pub mod config;
pub mod conn;
pub mod frontend;
pub mod http;
pub mod io;
pub mod observe;
pub mod passthrough;
pub mod route;
pub mod server;
pub mod state;
pub mod sync;
pub mod tls;
pub mod tools;
pub mod upstream;
