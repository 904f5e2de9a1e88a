//! The handshake log's line as written: the [`HandshakeRecord`] and, when
//! a hello was read, its `hello_id` and (first line of that hello since the
//! file was opened) its `hello` details (README, "Handshake log").

use std::io;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::observe::hello_details::{HelloDetails, HelloId, HellosWritten};
use crate::observe::telemetry::{HandshakeRecord, JsonLines};

/// A hello's details and their id.
#[derive(Debug, Clone)]
pub struct LoggedHello {
    pub id: HelloId,
    pub details: HelloDetails,
}

impl LoggedHello {
    pub fn new(details: HelloDetails) -> Self {
        LoggedHello {
            id: details.id(),
            details,
        }
    }
}

/// A handshake-log line on its way: the record every stage fills in (it
/// derefs to it) and what the log keeps of the hello.
#[derive(Debug, Clone)]
pub struct HandshakeLine {
    pub record: HandshakeRecord,
    /// `None` without a hello. Shared: one hello's details serve every
    /// connection that sends it (see `conn::hello_facts`).
    pub hello: Option<Arc<LoggedHello>>,
}

impl Deref for HandshakeLine {
    type Target = HandshakeRecord;

    fn deref(&self) -> &HandshakeRecord {
        &self.record
    }
}

impl DerefMut for HandshakeLine {
    fn deref_mut(&mut self) -> &mut HandshakeRecord {
        &mut self.record
    }
}

/// The handshake log file, and which hellos it has described.
#[derive(Debug)]
pub struct HandshakeLog {
    lines: JsonLines,
    written: HellosWritten,
}

/// The JSON of one line: the record's fields, then `hello_id` and `hello`.
#[derive(Serialize)]
struct Written<'a> {
    #[serde(flatten)]
    record: &'a HandshakeRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    hello_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hello: Option<&'a HelloDetails>,
}

impl HandshakeLog {
    /// Opens `path` as `JsonLines::open` does.
    pub fn open(path: &Path, dropped: Counter<u64, AtomicU64>) -> io::Result<Self> {
        Ok(HandshakeLog {
            lines: JsonLines::open(path, dropped)?,
            written: HellosWritten::default(),
        })
    }

    /// Queues `line`, with the hello's details if this log has not
    /// described that hello yet.
    pub fn write(&self, line: &HandshakeLine) {
        let hello = line.hello.as_deref();
        let details = hello
            .filter(|h| self.written.first(h.id))
            .map(|h| &h.details);
        self.lines.write(&Written {
            record: &line.record,
            hello_id: hello.map(|h| h.id.as_hex()),
            hello: details,
        });
    }
}
