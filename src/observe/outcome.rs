//! What became of a ClientHello: the handshake log's `outcome`, the
//! `outcome` label of the handshake metric and a column of the report.

use serde::{Deserialize, Serialize};

/// A handshake's outcome, named in logs, metrics and the report by [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeOutcome {
    /// The handshake completed (rustls or the OpenSSL engine).
    Ok,
    /// A hello was read, or awaited, and the handshake did not complete.
    Failed,
    /// Not a usable ClientHello (not TLS, malformed, too large), or a
    /// PROXY header refused.
    Rejected,
    /// Routed by SNI, unopened, to a passthrough listener's upstream.
    Passthrough,
    /// A client rustls cannot serve, forwarded to the `legacy_upstream`.
    LegacyPassthrough,
}

impl HandshakeOutcome {
    /// Every outcome, in declaration order (so `outcome as usize` indexes it).
    pub const ALL: [HandshakeOutcome; 5] = [
        HandshakeOutcome::Ok,
        HandshakeOutcome::Failed,
        HandshakeOutcome::Rejected,
        HandshakeOutcome::Passthrough,
        HandshakeOutcome::LegacyPassthrough,
    ];

    /// The name in the handshake log, metrics and report.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeOutcome::Ok => "ok",
            HandshakeOutcome::Failed => "failed",
            HandshakeOutcome::Rejected => "rejected",
            HandshakeOutcome::Passthrough => "passthrough",
            HandshakeOutcome::LegacyPassthrough => "legacy_passthrough",
        }
    }

    /// The outcome a log line names exactly so; `None` for any other name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// The handshake succeeded, or the client was handed on intact.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            HandshakeOutcome::Ok
                | HandshakeOutcome::Passthrough
                | HandshakeOutcome::LegacyPassthrough
        )
    }
}

impl std::fmt::Display for HandshakeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HandshakeOutcome;

    #[test]
    fn names_are_the_serialized_names_and_parse_back() {
        for (i, o) in HandshakeOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i);
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<HandshakeOutcome>(&json).unwrap(), o);
            assert_eq!(HandshakeOutcome::from_name(o.as_str()), Some(o));
        }
        assert_eq!(HandshakeOutcome::from_name("OK"), None);
        assert_eq!(HandshakeOutcome::from_name("refused"), None);
    }
}
