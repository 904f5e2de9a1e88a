//! TLS: the ClientHello (reading, parsing, fingerprints, diagnosis),
//! certificates and their hygiene, session tickets, and the certificate
//! store with the rustls handshake (`store`, re-exported here), and the
//! client-facing TLS stream over rustls' unbuffered API (`server_stream`).

pub mod certs;
pub mod covered;
pub mod decide;
pub mod diagnose;
pub mod failure;
pub mod fingerprint;
pub mod fit;
pub mod groups;
pub mod hello;
pub mod hygiene;
pub mod logged_hello;
#[cfg(feature = "legacy-tls")]
pub mod openssl;
pub mod pfx;
pub mod predict;
pub mod server_stream;
pub mod store;
pub mod tickets;

pub use store::*;
