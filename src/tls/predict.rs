//! What an https listener's handshake with a ClientHello would come to,
//! foreseen without bytes or a handshake: [`decide`] (certificate, strict
//! refusals, engine), then for rustls [`fit::check`], which follows a rustls
//! 0.23 server step by step. `snigate explain` (which then also runs the
//! real handshake in memory on the hello's bytes) and `snigate report
//! --against` (which has only what the handshake log keeps) both start
//! here, so they cannot disagree with each other or with the proxy.

use serde::Serialize;

use super::decide::{
    decide, handshake_failure, Decision, Engine, ListenerTls, RefusalKind, Served,
};
use super::fit;
use super::hello::ClientHelloInfo;
use super::store::CertificateStore;

/// What a listener would do with a hello: the handshake log's outcomes
/// that can be foreseen, and `refused` for a hello the listener turns away
/// before any handshake (strict SNI, no route), which the log writes as
/// `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    Refused,
    Passthrough,
    LegacyPassthrough,
}

impl Outcome {
    /// The name in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Passthrough => "passthrough",
            Outcome::LegacyPassthrough => "legacy_passthrough",
        }
    }

    /// The client is served or handed on intact.
    pub fn succeeds(self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::Passthrough | Outcome::LegacyPassthrough
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The foreseen outcome, with what the handshake log would say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub outcome: Outcome,
    /// The certificate and engine when the hello is served (whatever the
    /// handshake then does).
    pub served: Option<Served>,
    /// Why it fails or is refused, or (legacy paths) why rustls cannot
    /// serve it: the handshake log's `reason`.
    pub reason: Option<String>,
    /// The handshake log's `hint`.
    pub hint: Option<String>,
}

/// What `listener` would do with `hello`. `ok` for a hello served by the
/// `legacy_tls` engine means handed to OpenSSL: its handshake is not
/// foreseen here (`explain` runs it on the hello's bytes).
pub fn predict(
    listener: ListenerTls<'_>,
    hello: &ClientHelloInfo,
    certificates: &CertificateStore,
) -> Prediction {
    let served = match decide(listener, hello, certificates) {
        Decision::Serve(served) => served,
        Decision::Refuse(refusal) => {
            let outcome = match refusal.kind {
                RefusalKind::NoCertificate => Outcome::Refused,
                RefusalKind::Sslv2 | RefusalKind::NoConfiguration => Outcome::Failed,
            };
            return Prediction {
                outcome,
                served: None,
                reason: Some(refusal.reason),
                hint: refusal.hint,
            };
        }
    };
    let (outcome, reason, hint) = match &served.engine {
        Engine::LegacyUpstream { reason, .. } => {
            (Outcome::LegacyPassthrough, Some(reason.clone()), None)
        }
        Engine::LegacyTls { reason } => (Outcome::Ok, Some(reason.clone()), None),
        Engine::Rustls => match rustls_check(listener, hello, certificates, &served) {
            Ok(()) => (Outcome::Ok, None, None),
            Err((reason, hint)) => (Outcome::Failed, Some(reason), hint),
        },
    };
    Prediction {
        outcome,
        served: Some(served),
        reason,
        hint,
    }
}

/// [`fit::check`] for the served certificate: `Err` with the reason and
/// hint the handshake log would give the failed handshake.
fn rustls_check(
    listener: ListenerTls<'_>,
    hello: &ClientHelloInfo,
    certificates: &CertificateStore,
    served: &Served,
) -> Result<(), (String, Option<String>)> {
    // decide() refuses a certificate without a configuration.
    let Some(config) = listener.server_configs.get(served.certificate.index()) else {
        return Ok(());
    };
    let cert = certificates.get(served.certificate);
    fit::check(hello, config, &cert.certified_key).map_err(|error| {
        let failure = fit::failure(error);
        handshake_failure(hello, served, certificates, &failure)
    })
}
