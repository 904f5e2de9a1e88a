//! The HTTP stage: serving HTTP/1.1 and h2 to a client (`proxy`), the
//! request checks (host, method, upgrade, request line), the connection's
//! timers, and the bodies streamed both ways.

pub mod body;
pub mod h1;
pub mod handoff;
pub mod head_timer;
pub mod life;
pub mod proxy;
pub mod request_checks;
pub mod request_host;
pub mod request_line;
