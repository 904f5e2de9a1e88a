//! Upstreams: sending requests over a keep-alive pool (`send`, re-exported
//! here), balancing, server health, and TLS to backends.

pub mod backend_tls;
pub mod balance;
pub mod health;
pub mod pool;
pub mod request_body;
pub mod score;
pub mod send;

pub use send::*;
