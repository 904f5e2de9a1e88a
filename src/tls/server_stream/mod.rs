//! The client-facing TLS stream: rustls' unbuffered server connection over
//! a socket, with buffers that hold memory only while they hold bytes.
//!
//! Why not tokio-rustls: it drives rustls' buffered API, whose record
//! buffer (`DeframerVecBuffer`) is resized to 4 KiB on every read and never
//! shrinks below that, so every idle keep-alive connection keeps 4 KiB it
//! has no use for (a farm's front end holds tens of thousands of them). No
//! crate drives the unbuffered API over tokio with buffers released between
//! reads (tokio-rustls issue #60, "Use Unbuffered API", is open), so this
//! is written here, on rustls' own state machine: rustls does all of TLS
//! (handshake, tickets, key updates, alerts, renegotiation refusals); this
//! module only moves bytes between the socket, rustls and the caller.
//!
//! What it keeps, and for how long (see `records.rs`):
//! - records read from the client, until rustls has used them: at most one
//!   record (18 KiB) plus a 4 KiB read, or the 64 KiB rustls allows for a
//!   handshake message joined from several records; given back to the
//!   thread's spares when empty;
//! - records for the client, until the socket took them: at most one
//!   write's records of application data (a write takes 64 KiB at most and
//!   waits until the last one is sent) plus what rustls queued; emptied
//!   buffers go back to a few spares per thread (`spare.rs`), not to the
//!   allocator;
//! - decrypted bytes the reader's buffer had no room for; freed when read.
//!
//! A connection waiting for its next request holds none of them.

mod handshake;
mod records;
mod spare;
mod stream;
mod transport;

#[cfg(test)]
mod tests;

pub use handshake::accept;
pub use stream::ServerTlsStream;
pub use transport::Transport;
