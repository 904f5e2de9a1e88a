//! Starting and stopping a whole proxy: bind every listener, start accept
//! loops and the admin endpoint, and drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::state::State;

/// A running proxy. Dropping it does not stop it; call [`Proxy::shutdown`].
pub struct Proxy {
    state: Arc<State>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    bound: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
}

/// Why a proxy could not start: every problem, in plain words.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct StartError(pub Vec<String>);

impl Proxy {
    /// Builds the state and binds every address; fails without serving
    /// anything if any part is wrong.
    pub async fn start(settings: Settings) -> Result<Proxy, StartError> {
        for what in &settings.inactive {
            tracing::warn!("configured but not active in this version: {what}");
        }
        let state = Arc::new(State::build(settings).map_err(StartError)?);
        let mut sockets = Vec::new();
        let mut errors = Vec::new();
        for (index, l) in state.listeners.iter().enumerate() {
            for addr in &l.settings.bind {
                match crate::accept::bind(*addr) {
                    Ok(s) => sockets.push((index, s)),
                    Err(e) => errors.push(format!(
                        "listener \"{}\": cannot listen on {addr}: {e}",
                        l.settings.name
                    )),
                }
            }
        }
        let admin_socket = match state.settings.admin {
            Some(addr) => match crate::accept::bind(addr) {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push(format!("admin: cannot listen on {addr}: {e}"));
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(StartError(errors));
        }

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut bound = Vec::new();
        for (index, socket) in sockets {
            let name = state.listeners[index].settings.name.clone();
            let addr = socket
                .local_addr()
                .map_err(|e| StartError(vec![e.to_string()]))?;
            tracing::info!(listener = %name, %addr, mode = ?state.listeners[index].settings.mode, "listening");
            bound.push((name, addr));
            tokio::spawn(crate::accept::accept_loop(
                state.clone(),
                index,
                socket,
                cancel.clone(),
                tracker.clone(),
            ));
        }
        let admin = match admin_socket {
            Some(s) => {
                let addr = s.local_addr().ok();
                tracing::info!(addr = ?addr, "admin endpoint listening");
                tokio::spawn(crate::admin::serve(
                    state.clone(),
                    s,
                    SystemTime::now(),
                    cancel.clone(),
                ));
                addr
            }
            None => None,
        };
        tokio::spawn(prune_upstreams(state.clone(), cancel.clone()));
        crate::health::start(&state, &cancel);
        Ok(Proxy {
            state,
            cancel,
            tracker,
            bound,
            admin,
        })
    }

    /// The addresses a listener is bound to (port 0 resolved).
    pub fn addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter(|(n, _)| n == listener)
            .map(|(_, a)| *a)
            .collect()
    }

    /// The first address of a listener.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs(listener).into_iter().next()
    }

    /// The admin endpoint's address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The shared runtime state.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops accepting, asks open connections to finish (HTTP/1 closes after
    /// the current response, h2 sends GOAWAY) and waits for them up to
    /// `shutdown_grace`. Returns how many were still open then.
    pub async fn shutdown(self) -> usize {
        self.cancel.cancel();
        self.tracker.close();
        let grace = self.state.settings.timeouts.shutdown_grace;
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => {
                let left = self.tracker.len();
                tracing::warn!(
                    open = left,
                    "shutdown grace period over; closing remaining connections"
                );
                left
            }
        }
    }
}

async fn prune_upstreams(state: Arc<State>, cancel: CancellationToken) {
    let every = (state.settings.timeouts.upstream_idle / 2).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => state.upstreams.iter().for_each(|u| u.prune_idle()),
        }
    }
}

/// Runs until SIGTERM or SIGINT, then drains.
pub async fn run_until_signal(settings: Settings) -> Result<(), StartError> {
    let proxy = Proxy::start(settings).await?;
    wait_for_stop_signal().await;
    tracing::info!("stopping: no new connections; draining open ones");
    let left = proxy.shutdown().await;
    tracing::info!(left_open = left, "stopped");
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => tracing::warn!("SIGHUP: reload is not available in this version; restart snigate to apply changes"),
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
