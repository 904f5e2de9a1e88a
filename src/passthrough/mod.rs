//! Connections snigate forwards as raw TLS: passthrough listeners (routed by
//! SNI) and the `legacy_upstream` path.

pub mod legacy;
pub mod sni;
