//! Each observed kind through NEW's listener of the same name: https by
//! [`predict`] (the proxy's decision and the rustls check), passthrough by
//! the listener's SNI routing ([`crate::route::RouteTable::route_sni`]),
//! both on the hello rebuilt from the log ([`replayed`]).

use serde::Serialize;

use super::observed::ObservedLogs;
use crate::config::ListenerMode;
use crate::observe::catalogue;
use crate::observe::hellos_seen::{HelloKey, KindKey, Observed};
use crate::state::{ListenerState, State};
use crate::tls::decide::Engine;
use crate::tls::hello::ClientHelloInfo;
use crate::tls::logged_hello::replayed;
use crate::tls::predict::{predict, Outcome, Prediction};

/// One kind: what it is, what it got, what NEW would give it.
#[derive(Debug, Clone, Serialize)]
pub struct KindReplay {
    /// The catalogue's name for its JA4, or null.
    pub client: Option<String>,
    pub ja4: String,
    /// The SNI as sent; null without one.
    pub sni: Option<String>,
    /// The log's `hello_id`; null on lines written without one.
    pub hello_id: Option<String>,
    /// Today's outcomes, from the logs: handshakes per outcome.
    pub today: Vec<(String, u64)>,
    /// The reason of the last failed handshake today.
    pub today_reason: Option<String>,
    /// Under NEW; null when the kind could not be replayed.
    pub new: Option<UnderNew>,
    /// Why it was not replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_replayed: Option<String>,
    pub handshakes: u64,
    /// Distinct client IPs.
    pub addresses: u64,
    /// `addresses` is a lower bound (too many addresses to remember).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub addresses_capped: bool,
    /// What changes from today, or null.
    pub change: Option<Change>,
    #[serde(skip)]
    pub(super) ips: Vec<std::net::IpAddr>,
}

/// The outcome under NEW, as the handshake log would word it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnderNew {
    pub outcome: Outcome,
    pub certificate: Option<String>,
    pub fallback: bool,
    /// `"openssl"` for the `legacy_tls` engine (its handshake is not
    /// foreseen); absent for rustls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<&'static str>,
    pub upstream: Option<String>,
    pub reason: Option<String>,
    pub hint: Option<String>,
}

/// How a kind's fate changes under NEW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Refused before any handshake (strict SNI, no route).
    Refused,
    /// Its handshake would fail (or fail for another reason than today).
    Fails,
    /// Served, where today it failed.
    Served,
    /// Served another way (rustls, a legacy path, passthrough).
    OtherPath,
}

impl Change {
    /// The plain words of the summary line.
    pub fn words(self) -> &'static str {
        match self {
            Change::Refused => "would be refused under NEW",
            Change::Fails => "would fail under NEW",
            Change::Served => "would be served under NEW",
            Change::OtherPath => "would be served another way under NEW",
        }
    }
}

/// Every kind of `listener` (its name in the logs), replayed on `new`.
pub fn listener_kinds(new: &State, listener: &str, logs: &ObservedLogs) -> Vec<KindReplay> {
    let target = new.listeners.iter().find(|l| l.settings.name == listener);
    let mut kinds: Vec<(&KindKey, &Observed)> = logs
        .seen
        .kinds
        .iter()
        .filter(|(k, _)| k.listener == listener)
        .collect();
    kinds.sort_by(|a, b| b.1.handshakes.cmp(&a.1.handshakes).then(a.0.cmp(b.0)));
    kinds
        .into_iter()
        .map(|(key, seen)| {
            let mut kind = observed(key, seen);
            match replay(new, target, key, logs) {
                Ok(under) => {
                    kind.change = change(seen, &under);
                    kind.new = Some(under);
                }
                Err(why) => kind.not_replayed = Some(why),
            }
            kind
        })
        .collect()
}

/// The kind as the logs saw it, not replayed yet.
fn observed(key: &KindKey, seen: &Observed) -> KindReplay {
    let mut today: Vec<(String, u64)> = seen
        .outcomes
        .iter()
        .map(|(name, n)| (name.to_string(), *n))
        .collect();
    today.sort_by_key(|t| std::cmp::Reverse(t.1));
    KindReplay {
        client: catalogue::identify(&seen.ja4).map(|c| c.name.clone()),
        ja4: seen.ja4.clone(),
        sni: key.sni.clone(),
        hello_id: match &key.hello {
            HelloKey::Id(id) => Some(id.as_hex()),
            HelloKey::Ja4(_) => None,
        },
        today,
        today_reason: seen.reason.clone(),
        new: None,
        not_replayed: None,
        handshakes: seen.handshakes,
        addresses: seen.addresses.len() as u64,
        addresses_capped: seen.addresses_capped,
        change: None,
        ips: seen.addresses.iter().copied().collect(),
    }
}

/// What NEW's listener does with the kind's hello, or why it cannot say.
fn replay(
    new: &State,
    target: Option<&ListenerState>,
    key: &KindKey,
    logs: &ObservedLogs,
) -> Result<UnderNew, String> {
    let Some(l) = target else {
        return Err(format!("NEW has no listener named \"{}\"", key.listener));
    };
    match l.settings.mode {
        ListenerMode::Http => Err("the listener is plain HTTP under NEW: no TLS to replay".into()),
        ListenerMode::Passthrough => Ok(passthrough(new, l, key.sni.as_deref())),
        ListenerMode::Https => {
            let hello = hello_of(key, logs)
                .ok_or_else(|| "not replayable: hello details not in these logs".to_string())?;
            Ok(https(new, l, &hello))
        }
    }
}

/// The hello a kind's lines describe, if the logs hold its details.
fn hello_of(key: &KindKey, logs: &ObservedLogs) -> Option<ClientHelloInfo> {
    match &key.hello {
        HelloKey::Id(id) => logs
            .seen
            .details
            .get(id)
            .map(|d| replayed(d, key.sni.as_deref())),
        HelloKey::Ja4(_) => None,
    }
}

fn https(new: &State, l: &ListenerState, hello: &ClientHelloInfo) -> UnderNew {
    let Prediction {
        outcome,
        served,
        reason,
        hint,
    } = predict(l.tls(), hello, &new.certificates);
    let mut under = UnderNew {
        outcome,
        certificate: None,
        fallback: false,
        engine: None,
        upstream: None,
        reason,
        hint,
    };
    if let Some(served) = served {
        match served.engine {
            // As the handshake log: nothing of snigate's is served.
            Engine::LegacyUpstream { upstream, .. } => under.upstream = Some(upstream),
            engine => {
                under.certificate = Some(new.certificates.get(served.certificate).name.clone());
                under.fallback = served.fallback;
                if matches!(engine, Engine::LegacyTls { .. }) {
                    under.engine = Some("openssl");
                }
            }
        }
    }
    under
}

fn passthrough(new: &State, l: &ListenerState, sni: Option<&str>) -> UnderNew {
    let sni = sni.map(crate::config::host_name);
    let mut under = UnderNew {
        outcome: Outcome::Passthrough,
        certificate: None,
        fallback: false,
        engine: None,
        upstream: None,
        reason: None,
        hint: None,
    };
    match l.routes.route_sni(sni.as_deref(), l.settings.strict_sni) {
        Ok(route) => {
            under.fallback = matches!(route, crate::route::RouteMatch::Default(_));
            under.upstream = new
                .upstreams
                .get(route.upstream().index())
                .map(|u| u.name.clone());
        }
        Err(reason) => {
            under.outcome = Outcome::Refused;
            under.reason = Some(reason);
        }
    }
    under
}

/// How `under` differs from what the kind got today (most of its
/// handshakes): `None` when it would get the same.
fn change(seen: &Observed, under: &UnderNew) -> Option<Change> {
    let today = seen.main_outcome()?;
    let today_ok = matches!(today, "ok" | "passthrough" | "legacy_passthrough");
    if under.outcome.succeeds() {
        return match (today_ok, today == under.outcome.as_str()) {
            (false, _) => Some(Change::Served),
            (true, false) => Some(Change::OtherPath),
            (true, true) => None,
        };
    }
    // A failure the log already shows, for the same reason, is no change.
    if today == "failed" && seen.reason.is_some() && seen.reason == under.reason {
        return None;
    }
    Some(match under.outcome {
        Outcome::Refused => Change::Refused,
        _ => Change::Fails,
    })
}
