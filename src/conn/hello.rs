//! Reading a connection's ClientHello: under the `client_hello` timeout, a
//! stop not waited for, and anything that is not a usable hello logged and
//! closed here. An SSLv2-format hello is returned like any other: what to
//! do with it is the listener's decision (`tls::decide`, passthrough
//! routing).

use std::time::Instant;

use tokio::net::TcpStream;

use super::{emit, record, ConnInfo};
use crate::observe::metrics::FailureReason;
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::millis;
use crate::state::State;
use crate::tls::hello::{read_client_hello, ClientHello, HelloError};

/// The connection's ClientHello, or `None` once the failure is logged (or
/// the process is stopping).
pub async fn read_hello(
    state: &State,
    info: &ConnInfo,
    stream: &mut TcpStream,
    start: Instant,
) -> Option<ClientHello> {
    // A stop does not wait for hellos that have not arrived. The read
    // first: a hello already in (most are, by the time the connection is
    // accepted) then costs no wait on the stop.
    let read = tokio::select! {
        biased;
        r = read_client_hello(stream, state.settings.timeouts.client_hello) => r,
        _ = state.stop.cancelled() => return None,
    };
    match read {
        Ok(hello) => Some(hello),
        Err(HelloError::Sslv2 { hello }) => Some(*hello),
        Err(e) => {
            let outcome = match &e {
                HelloError::NotTls { .. }
                | HelloError::Malformed(_)
                | HelloError::TooLarge { .. } => HandshakeOutcome::Rejected,
                _ => HandshakeOutcome::Failed,
            };
            let reason = match &e {
                HelloError::Timeout { .. } => FailureReason::HelloTimeout,
                HelloError::Closed { .. } | HelloError::Io(_) => FailureReason::HelloClosed,
                HelloError::NotTls { .. } => FailureReason::NotTls,
                HelloError::Malformed(_) | HelloError::TooLarge { .. } => FailureReason::BadHello,
                HelloError::Sslv2 { .. } => FailureReason::Sslv2,
            };
            state.listener(info.listener).metrics.failure(reason);
            let mut rec = record(state, info, None);
            rec.outcome = outcome;
            rec.reason = Some(e.reason());
            rec.ms = millis(start.elapsed());
            emit(state, info, &rec);
            None
        }
    }
}
