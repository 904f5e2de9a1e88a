//! Facts about an accepted connection, below every protocol stage: its
//! info and ids, the handshake-record writer, and the PROXY protocol
//! header.

pub mod info;
pub mod proxy_protocol;
pub mod record;

pub use info::*;
pub use record::{emit, record};
