//! `snigate report --against NEW.toml [LOG...] [--json]`: what-if over
//! observed traffic. Every distinct client kind the handshake logs saw
//! (listener, hello, SNI) is replayed through NEW's decision — the pure
//! [`crate::tls::predict::predict`] that `explain` uses, on the hello
//! rebuilt from the log's `hello` details — with no network. Per listener:
//! each kind, today's outcome, the outcome under NEW, handshakes and
//! addresses; then what changes, in plain words.

mod observed;
mod replay;
mod text;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::state::State;

pub use observed::MAX_DOCUMENT_BYTES;
pub use replay::{Change, KindReplay, UnderNew};
pub use text::render as render_text;

/// The whole answer (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Against {
    /// NEW, as named.
    pub config: String,
    /// The logs read.
    pub logs: Vec<String>,
    /// Lines read, and of those skipped (not a handshake line of a hello).
    pub lines: u64,
    pub skipped: u64,
    pub listeners: Vec<ListenerReplay>,
}

/// One listener of the logs.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerReplay {
    pub listener: String,
    /// Its mode under NEW (`https`, `passthrough`, `http`), or null when
    /// NEW has no listener of that name.
    pub mode_under_new: Option<&'static str>,
    /// Handshakes of hellos in the logs on this listener.
    pub handshakes: u64,
    /// Handshakes of kinds not listed (the limit of kinds kept reached).
    pub more_handshakes: u64,
    pub kinds: Vec<KindReplay>,
    /// What changes, kinds grouped by [`Change`].
    pub changes: Vec<ChangeSummary>,
    /// Kinds that could not be replayed.
    pub not_replayed: u64,
}

/// The kinds one [`Change`] applies to.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeSummary {
    pub change: Change,
    pub kinds: u64,
    /// Distinct client IPs over those kinds.
    pub addresses: u64,
    pub handshakes: u64,
    /// Share of the listener's handshakes, in percent.
    pub percent: f64,
    /// Kind names: the catalogue's, else "unknown client", with the SNI.
    pub clients: Vec<String>,
}

/// Reads NEW from `config` and the `logs`, and writes the table (or JSON).
pub fn run(config: &Path, logs: &[PathBuf], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let new = crate::tools::explain::load_config(config)?;
    let answer = against(&new, config, logs)?;
    let text = if json {
        serde_json::to_string_pretty(&answer)? + "\n"
    } else {
        text::render(&answer)
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Replays what `logs` saw through `new` (loaded from `config`, as
/// [`crate::tools::explain::load_config`] does).
pub fn against(new: &State, config: &Path, logs: &[PathBuf]) -> anyhow::Result<Against> {
    let observed = observed::read(logs)?;
    let listeners = observed
        .seen
        .listeners
        .iter()
        .map(|(name, totals)| {
            let kinds = replay::listener_kinds(new, name, &observed);
            ListenerReplay {
                listener: name.clone(),
                mode_under_new: new
                    .listeners
                    .iter()
                    .find(|l| &l.settings.name == name)
                    .map(|l| mode_name(l.settings.mode)),
                handshakes: totals.handshakes,
                more_handshakes: totals.more,
                changes: summarise(&kinds, totals.handshakes),
                not_replayed: kinds.iter().filter(|k| k.new.is_none()).count() as u64,
                kinds,
            }
        })
        .collect();
    Ok(Against {
        config: config.display().to_string(),
        logs: logs.iter().map(|p| p.display().to_string()).collect(),
        lines: observed.lines,
        skipped: observed.skipped,
        listeners,
    })
}

fn mode_name(mode: crate::config::ListenerMode) -> &'static str {
    match mode {
        crate::config::ListenerMode::Https => "https",
        crate::config::ListenerMode::Passthrough => "passthrough",
        crate::config::ListenerMode::Http => "http",
    }
}

/// The name a kind is shown by: catalogue name (or "unknown client") and SNI.
pub fn kind_name(kind: &KindReplay) -> String {
    let client = kind.client.as_deref().unwrap_or("unknown client");
    match &kind.sni {
        Some(sni) => format!("{client} (SNI {sni})"),
        None => format!("{client} (no SNI)"),
    }
}

/// The kinds that change, grouped by how.
fn summarise(kinds: &[KindReplay], handshakes: u64) -> Vec<ChangeSummary> {
    let mut by_change: BTreeMap<Change, Vec<&KindReplay>> = BTreeMap::new();
    for kind in kinds {
        if let Some(change) = kind.change {
            by_change.entry(change).or_default().push(kind);
        }
    }
    by_change
        .into_iter()
        .map(|(change, kinds)| {
            let ips: HashSet<_> = kinds.iter().flat_map(|k| k.ips.iter()).collect();
            let n: u64 = kinds.iter().map(|k| k.handshakes).sum();
            let mut clients: Vec<String> = kinds.iter().map(|k| kind_name(k)).collect();
            clients.dedup();
            ChangeSummary {
                change,
                kinds: kinds.len() as u64,
                addresses: ips.len() as u64,
                handshakes: n,
                percent: if handshakes == 0 {
                    0.0
                } else {
                    (n as f64) * 100.0 / (handshakes as f64)
                },
                clients,
            }
        })
        .collect()
}
