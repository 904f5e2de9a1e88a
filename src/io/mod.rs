//! Byte streams below TLS and HTTP: replaying bytes read ahead, joining
//! two connections, and the timer floor that keeps their deadlines cheap.

pub mod replay;
pub mod splice;
pub mod timer_floor;
