//! Facts about an accepted connection, below every protocol stage: its
//! info and ids, the handshake-record writer, the PROXY protocol header,
//! and reading the ClientHello.

pub mod hello;
pub mod hello_facts;
pub mod info;
pub mod proxy_protocol;
pub mod record;

pub use info::*;
pub use record::{emit, record};
