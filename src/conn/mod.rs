//! Facts about an accepted connection, below every protocol stage: its
//! info and ids, the handshake-record writer, the PROXY protocol header and
//! the per-source connection count.

pub mod info;
pub mod proxy_protocol;
pub mod record;
pub mod source_limit;

pub use info::*;
pub use record::{emit, record};
