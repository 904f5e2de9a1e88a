//! Byte streams below TLS and HTTP: replaying bytes read ahead, and joining
//! two connections.

pub mod replay;
pub mod splice;
