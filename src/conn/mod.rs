//! Facts about an accepted connection before any protocol: the PROXY
//! protocol header and the per-source connection count.

pub mod proxy_protocol;
pub mod source_limit;
