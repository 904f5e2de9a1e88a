//! Connections snigate forwards as raw TLS: the `legacy_upstream` path.

pub mod legacy;
