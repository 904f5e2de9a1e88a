//! One accepted connection from first byte to HTTP: dispatch by listener
//! mode, the rustls path, and the OpenSSL path (`legacy_tls`).

pub mod connection;
#[cfg(feature = "legacy-tls")]
pub mod legacy_tls;
pub mod pending;
