//! Starting, reloading and stopping a whole proxy.
//!
//! Start: build the [`State`] (every error collected), bind every address,
//! then serve. Reload (SIGHUP, `POST /reload`, [`Proxy::reload`]): read the
//! configuration file again, build a new state aside (certificates, TLS
//! configurations, routes, pools, logs), bind the addresses it adds, and
//! only when all of that worked swap it in with one `ArcSwap` store. Sockets
//! whose address stays are kept; removed ones stop accepting. The replaced
//! state is retired: an open HTTP connection carries on with the new state
//! when its listener and certificate are still there (see
//! [`crate::http::proxy::serve`]), else it completes its current request and
//! closes (h2: GOAWAY). A failed reload logs every error and changes nothing.
//! Stop: stop accepting, retire everything, wait up to `shutdown_grace`.
//!
//! Connections are served on the runtime the proxy started on, or with
//! [`Proxy::start_with_workers`] on worker threads ([`crate::server::workers`]),
//! each accepting on a socket of its own for every address; the starting
//! runtime then keeps signals, reloads, the admin endpoint and health checks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::server::accept::{bind_keys, BindKey};
use crate::server::workers::Workers;
use crate::state::ListenerId;
use crate::state::{Shared, State};
use crate::sync::lock;
use crate::tls::hygiene::Finding;

/// A running proxy. Dropping it does not stop what runs on the starting
/// runtime, but does stop its worker threads (and the connections on them);
/// call [`Proxy::shutdown`].
pub struct Proxy {
    control: Arc<Control>,
    /// The worker threads serving connections, if it has its own.
    workers: Option<Workers>,
}

/// Why a proxy could not start: every problem, in plain words.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct StartError(pub Vec<String>);

/// The running proxy's moving parts, shared with the admin endpoint and the
/// signal handler.
pub struct Control {
    current: Arc<ArcSwap<State>>,
    shared: Shared,
    /// Cancelled at stop: every accept loop and every state's `retire`.
    stop: CancellationToken,
    tracker: TaskTracker,
    /// The accept loops, so a stop can wait until no socket listens.
    accepting: TaskTracker,
    /// The worker threads' runtimes, which accept and serve connections;
    /// none: the runtime the proxy started on does.
    serving: Vec<Handle>,
    sockets: Mutex<Vec<Bound>>,
    admin: Mutex<Option<Bound>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    status: Mutex<ReloadStatus>,
    /// Certificate hygiene of the serving state, as last inspected (at
    /// start, at each reload, daily).
    hygiene: Mutex<Vec<Finding>>,
    started: SystemTime,
}

/// How often certificate hygiene is inspected again while nothing reloads.
const HYGIENE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// A bound socket's accept loop.
struct Bound {
    key: BindKey,
    /// The listener it serves (for [`Proxy::addrs`]); "admin" for the admin endpoint.
    listener: String,
    addr: SocketAddr,
    stop: CancellationToken,
    /// Its accept loops (one per worker; the admin endpoint's one); each
    /// closes its socket as it ends.
    loops: Vec<JoinHandle<()>>,
}

impl Bound {
    /// Stops accepting; resolves once every socket of it is closed.
    async fn close(self) {
        self.stop.cancel();
        for accepting in self.loops {
            let _ = accepting.await;
        }
        tracing::info!(listener = %self.listener, addr = %self.addr, "stopped listening");
    }
}

/// What `/healthz` says about reloads.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
    /// When this process started (RFC 3339).
    pub started: String,
    /// The last reload attempt, if any.
    pub last_reload: Option<ReloadOutcome>,
}

/// One reload attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    pub at: String,
    pub ok: bool,
    /// The generation serving after the attempt.
    pub generation: u64,
    /// Every problem found (empty when `ok`).
    pub errors: Vec<String>,
    /// Settings a reload cannot change (they need a restart).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

impl Proxy {
    /// Builds the state and binds every address; fails without serving
    /// anything if any part is wrong. Connections are served on the calling
    /// runtime.
    pub async fn start(settings: Settings) -> Result<Proxy, StartError> {
        Proxy::start_on(settings, None).await
    }

    /// As [`Proxy::start`], with connections served on `workers`.
    pub async fn start_with_workers(
        settings: Settings,
        workers: Workers,
    ) -> Result<Proxy, StartError> {
        Proxy::start_on(settings, Some(workers)).await
    }

    async fn start_on(settings: Settings, workers: Option<Workers>) -> Result<Proxy, StartError> {
        for what in &settings.inactive {
            tracing::warn!("configured but not active in this version: {what}");
        }
        let serving = workers
            .as_ref()
            .map_or(Vec::new(), |w| w.handles().to_vec());
        let shared = Shared::for_workers(serving.len());
        let stop = CancellationToken::new();
        let mut state = State::build_with(settings, &shared).map_err(StartError)?;
        tracing::info!(
            ms = state.loaded_in.as_millis() as u64,
            "{}",
            state.loaded()
        );
        state.retire = stop.child_token();
        state.stop = stop.clone();
        let state = Arc::new(state);
        let mut errors = Vec::new();
        let mut sockets = Vec::new();
        let keys = bind_keys(&state);
        let shared_ports = crate::server::accept::shared_ports(&addrs_of(&keys));
        // Before any socket of ours shares a port: nobody else may listen
        // on those exact addresses.
        for (key, index) in &keys {
            let addr = key.addr();
            if crate::server::accept::is_shared(addr, &shared_ports) {
                if let Err(e) = crate::server::accept::probe_free(addr) {
                    errors.push(format!(
                        "listener \"{}\": cannot listen on {addr}: {e}",
                        state.listener(*index).settings.name
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(StartError(errors));
        }
        for (key, index) in keys {
            match bind_for(&state, &key, index, &shared_ports, serving.len()) {
                Ok(s) => sockets.push((key, index, s)),
                Err(e) => errors.push(e),
            }
        }
        let admin_socket = match state.settings.admin {
            Some(addr) => match crate::server::accept::bind(addr, false) {
                Ok(s) => Some((addr, s)),
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

        let started = SystemTime::now();
        let control = Arc::new(Control {
            current: Arc::new(ArcSwap::new(state.clone())),
            shared,
            stop,
            tracker: TaskTracker::new(),
            accepting: TaskTracker::new(),
            serving,
            sockets: Mutex::new(Vec::new()),
            admin: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            status: Mutex::new(ReloadStatus {
                generation: state.generation,
                started: crate::observe::telemetry::timestamp(started),
                last_reload: None,
            }),
            hygiene: Mutex::new(Vec::new()),
            started,
        });
        for (key, index, socket) in sockets {
            control.serve_socket(&state, key, index, socket);
        }
        if let Some((configured, socket)) = admin_socket {
            control.serve_admin(configured, socket);
        }
        control.start_background(&state);
        // Serving already: with thousands of certificates the inspection
        // takes about as long as the load. Its warnings are on /healthz
        // before start returns.
        control.inspect_certificates_aside().await;
        tokio::spawn(daily_hygiene(control.clone()));
        tokio::spawn(crate::io::timer_floor::hold(control.stop.clone()));
        Ok(Proxy { control, workers })
    }

    /// The addresses a listener is bound to (port 0 resolved).
    pub fn addrs(&self, listener: &str) -> Vec<SocketAddr> {
        lock(&self.control.sockets)
            .iter()
            .filter(|b| b.listener == listener)
            .map(|b| b.addr)
            .collect()
    }

    /// The first address of a listener.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs(listener).into_iter().next()
    }

    /// The admin endpoint's address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        lock(&self.control.admin).as_ref().map(|b| b.addr)
    }

    /// The runtime state serving new connections now.
    pub fn state(&self) -> Arc<State> {
        self.control.current.load_full()
    }

    /// The control handle (reload, status), as the admin endpoint uses it.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Reads the configuration file again and swaps the new state in; on
    /// any error the running state stays. See the module comment.
    pub async fn reload(&self) -> Result<u64, Vec<String>> {
        self.control.reload().await
    }

    /// Stops accepting, asks open connections to finish (HTTP/1 closes after
    /// the current response, h2 sends GOAWAY) and waits for them up to
    /// `shutdown_grace`. Returns how many were still open then.
    pub async fn shutdown(self) -> usize {
        let Proxy { control, workers } = self;
        control.stop.cancel();
        // Every listening socket closes before anything else.
        control.accepting.close();
        control.accepting.wait().await;
        tracing::info!(
            open = control.tracker.len(),
            "stopping: no new connections; draining open ones"
        );
        control.tracker.close();
        let grace = control.current.load().settings.timeouts.shutdown_grace;
        let left = match tokio::time::timeout(grace, control.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => {
                let left = control.tracker.len();
                tracing::warn!(
                    open = left,
                    "shutdown grace period over; closing remaining connections"
                );
                left
            }
        };
        // The worker threads end (dropping what still runs on them) off
        // this runtime, which must not block while they join.
        if let Some(workers) = workers {
            let _ = tokio::task::spawn_blocking(move || drop(workers)).await;
        }
        left
    }
}

impl Control {
    /// The state serving new connections now.
    pub fn state(&self) -> Arc<State> {
        self.current.load_full()
    }

    /// Generation and last reload result.
    pub fn status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }

    /// When this process started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The certificate hygiene warnings of the serving configuration.
    pub fn hygiene(&self) -> Vec<Finding> {
        lock(&self.hygiene).clone()
    }

    /// Inspects the serving state's certificates (expiry, key file mode,
    /// chain order, fallback coverage), logs each finding as a warning and
    /// keeps them for `/healthz`.
    fn inspect_certificates(&self) {
        let began = std::time::Instant::now();
        let state = self.current.load();
        let findings = crate::tls::hygiene::inspect(
            &state.settings,
            state.certificates.all(),
            SystemTime::now(),
        );
        crate::tls::hygiene::log(&findings);
        let ms = began.elapsed().as_millis() as u64;
        tracing::info!(
            ms,
            findings = findings.len(),
            "certificates inspected in {ms} ms"
        );
        *lock(&self.hygiene) = findings;
    }

    /// [`Control::inspect_certificates`] on a blocking thread: with
    /// thousands of certificates it takes a while (a signature check per
    /// chain link), which the threads serving connections must not spend.
    async fn inspect_certificates_aside(self: &Arc<Self>) {
        let control = self.clone();
        let _ = tokio::task::spawn_blocking(move || control.inspect_certificates()).await;
    }

    /// See [`Proxy::reload`].
    pub async fn reload(self: &Arc<Self>) -> Result<u64, Vec<String>> {
        let _one = self.reloading.lock().await;
        let old = self.current.load_full();
        let source = old.settings.source.clone();
        tracing::info!(config = %source.display(), "reloading");
        let shared = self.shared.clone();
        // Reading files and building TLS configurations blocks: keep it off
        // the threads that serve connections.
        let built = tokio::task::spawn_blocking(move || {
            let settings = Settings::load(&source)
                .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
            State::build_with(settings, &shared)
        })
        .await
        .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]));
        let outcome = match built {
            Ok(state) => {
                tracing::info!(
                    ms = state.loaded_in.as_millis() as u64,
                    "{}",
                    state.loaded()
                );
                self.commit(old.clone(), state)
            }
            Err(errors) => Err(errors),
        };
        // A reload that returns has closed the addresses it removed.
        let outcome = match outcome {
            Ok((generation, gone)) => {
                for socket in gone {
                    socket.close().await;
                }
                Ok(generation)
            }
            Err(errors) => Err(errors),
        };
        // "reloaded" is logged when the new state serves; the hygiene
        // warnings follow (and are on /healthz before this returns).
        self.record(&old, &outcome);
        if outcome.is_ok() {
            self.inspect_certificates_aside().await;
        }
        outcome
    }

    /// Binds what the new state adds, then swaps it in. Nothing changes if
    /// a bind fails. Returns the new generation and the sockets it no longer
    /// listens on (listeners' and the admin endpoint's), for the caller to
    /// close ([`Bound::close`]: their accept loops may run on worker
    /// threads).
    fn commit(
        self: &Arc<Self>,
        old: Arc<State>,
        mut state: State,
    ) -> Result<(u64, Vec<Bound>), Vec<String>> {
        for what in &state.settings.inactive {
            tracing::warn!("configured but not active in this version: {what}");
        }
        state.generation = old.generation + 1;
        state.retire = self.stop.child_token();
        state.stop = self.stop.clone();
        // A listener that stays keeps its connection limit's permits and its
        // per-address counts, so the limits hold across the swap.
        for l in &mut state.listeners {
            if let Some(o) = old
                .listeners
                .iter()
                .find(|o| o.settings.name == l.settings.name)
            {
                l.sources = o.sources.clone();
                if o.settings.max_connections == l.settings.max_connections {
                    l.connections = o.connections.clone();
                }
            }
        }
        let wanted = bind_keys(&state);
        let shared_ports = crate::server::accept::shared_ports(&addrs_of(&wanted));
        let mut errors = Vec::new();
        let mut added = Vec::new();
        {
            let sockets = lock(&self.sockets);
            for (key, index) in &wanted {
                if !sockets.iter().any(|b| b.key == *key) {
                    match bind_for(&state, key, *index, &shared_ports, self.serving.len()) {
                        Ok(s) => added.push((key.clone(), *index, s)),
                        Err(mut e) => {
                            let addr = key.addr();
                            if crate::server::accept::is_shared(addr, &shared_ports)
                                && sockets.iter().any(|b| {
                                    b.addr.port() == addr.port()
                                        && b.addr.is_ipv6() == addr.is_ipv6()
                                })
                            {
                                e.push_str(&format!(
                                    " (port {} was not shared by a wildcard and specific addresses at start: restart snigate to listen on both)",
                                    addr.port()
                                ));
                            }
                            errors.push(e)
                        }
                    }
                }
            }
        }
        let admin_change = {
            let admin = lock(&self.admin);
            let now = admin.as_ref().map(|b| b.key.clone());
            let want = state.settings.admin.map(|a| BindKey::of("admin", a));
            if now == want {
                None
            } else {
                match state.settings.admin {
                    Some(addr) => match crate::server::accept::bind(addr, false) {
                        Ok(s) => Some(Some((addr, s))),
                        Err(e) => {
                            errors.push(format!("admin: cannot listen on {addr}: {e}"));
                            None
                        }
                    },
                    None => Some(None),
                }
            }
        };
        if !errors.is_empty() {
            // The sockets bound for it close as `added` drops.
            return Err(errors);
        }

        let state = Arc::new(state);
        self.current.store(state.clone());
        // Removed certificates leave the expiry metric.
        self.shared.metrics.clear_certificates();
        for c in state.certificates.all() {
            self.shared.metrics.certificate_expiry(&c.name, c.not_after);
        }
        for (key, index, socket) in added {
            self.serve_socket(&state, key, index, socket);
        }
        // Sockets whose address is gone go back to the caller to close; the
        // ones that stay now serve the new state's listener for their address.
        let mut gone = {
            let mut sockets = lock(&self.sockets);
            let (kept, gone): (Vec<Bound>, Vec<Bound>) = std::mem::take(&mut *sockets)
                .into_iter()
                .partition(|b| wanted.iter().any(|(k, _)| *k == b.key));
            *sockets = kept;
            for b in sockets.iter_mut() {
                if let Some((_, i)) = wanted.iter().find(|(k, _)| *k == b.key) {
                    b.listener = state.listener(*i).settings.name.clone();
                }
            }
            gone
        };
        if let Some(change) = admin_change {
            gone.extend(lock(&self.admin).take());
            if let Some((configured, socket)) = change {
                self.serve_admin(configured, socket);
            }
        }
        self.start_background(&state);
        old.retire.cancel();
        Ok((state.generation, gone))
    }

    fn record(&self, old: &State, outcome: &Result<u64, Vec<String>>) {
        let now = crate::observe::telemetry::timestamp(SystemTime::now());
        let current = self.current.load();
        let needs_restart = if current.settings.workers != old.settings.workers && outcome.is_ok() {
            vec![format!(
                "[runtime] workers = {} (running with {})",
                current.settings.workers, old.settings.workers
            )]
        } else {
            Vec::new()
        };
        match outcome {
            Ok(generation) => {
                tracing::info!(generation, "reloaded");
                for n in &needs_restart {
                    tracing::warn!("reload cannot change {n}; restart snigate to apply it");
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!("reload failed: {e}");
                }
                tracing::error!(
                    generation = old.generation,
                    "reload failed; still serving the previous configuration"
                );
            }
        }
        self.shared
            .metrics
            .reload(outcome.is_ok(), current.generation);
        let mut status = lock(&self.status);
        status.generation = current.generation;
        status.last_reload = Some(ReloadOutcome {
            at: now,
            ok: outcome.is_ok(),
            generation: current.generation,
            errors: outcome.clone().err().unwrap_or_default(),
            needs_restart,
        });
    }

    /// Accept loops for the sockets of `key`: one on the runtime the proxy
    /// started on, or one per worker, each on its own socket (see
    /// [`bind_for`]).
    fn serve_socket(
        &self,
        state: &State,
        key: BindKey,
        index: ListenerId,
        sockets: Vec<TcpListener>,
    ) {
        let name = state.listener(index).settings.name.clone();
        let Some(Ok(addr)) = sockets.first().map(TcpListener::local_addr) else {
            return;
        };
        tracing::info!(listener = %name, %addr, mode = ?state.listener(index).settings.mode, "listening");
        let stop = self.stop.child_token();
        let mut loops = Vec::new();
        for (worker, socket) in sockets.into_iter().enumerate() {
            let (current, key, stop) = (self.current.clone(), key.clone(), stop.clone());
            let tracker = self.tracker.clone();
            let accepting = move |socket| {
                crate::server::accept::accept_loop(current, key, socket, stop, tracker)
            };
            match self.serving.get(worker) {
                None => loops.push(self.accepting.spawn(accepting(socket))),
                Some(runtime) => {
                    // Registered again, with the worker's own runtime.
                    let socket = socket.into_std();
                    let on_worker = async move {
                        match socket.and_then(TcpListener::from_std) {
                            Ok(socket) => accepting(socket).await,
                            Err(e) => {
                                tracing::error!(%addr, worker, error = %e, "worker cannot accept")
                            }
                        }
                    };
                    loops.push(self.accepting.spawn_on(on_worker, runtime));
                }
            }
        }
        lock(&self.sockets).push(Bound {
            key,
            listener: name,
            addr,
            stop,
            loops,
        });
    }

    fn serve_admin(self: &Arc<Self>, configured: SocketAddr, socket: TcpListener) {
        let Ok(addr) = socket.local_addr() else {
            return;
        };
        tracing::info!(%addr, "admin endpoint listening");
        let stop = self.stop.child_token();
        // Its requests are tasks of their own: the loop ends at `stop`
        // without waiting for them (a `POST /reload` that moves the
        // endpoint waits for this loop).
        let accepting = tokio::spawn(crate::server::admin::serve(
            self.clone(),
            socket,
            stop.clone(),
        ));
        *lock(&self.admin) = Some(Bound {
            key: BindKey::of("admin", configured),
            listener: "admin".into(),
            addr,
            stop,
            loops: vec![accepting],
        });
    }

    /// Health checks and pool pruning of one state, until it is retired.
    fn start_background(&self, state: &Arc<State>) {
        tokio::spawn(prune_upstreams(state.clone(), state.retire.clone()));
        crate::server::health_checks::start(state, &state.retire);
    }
}

fn addrs_of(keys: &[(BindKey, ListenerId)]) -> Vec<SocketAddr> {
    keys.iter().map(|(k, _)| k.addr()).collect()
}

/// The listening sockets of `key`: one, or with `workers` worker threads
/// one per worker, all on the same address with `SO_REUSEPORT` so the
/// kernel spreads new connections over them (no worker is woken for a
/// connection another takes).
fn bind_for(
    state: &State,
    key: &BindKey,
    index: ListenerId,
    shared_ports: &[(bool, u16)],
    workers: usize,
) -> Result<Vec<TcpListener>, String> {
    let addr = key.addr();
    let shared = crate::server::accept::is_shared(addr, shared_ports);
    let cannot = |e: std::io::Error| {
        format!(
            "listener \"{}\": cannot listen on {addr}: {e}",
            state.listener(index).settings.name
        )
    };
    let reuse_port = shared || workers > 1;
    // Shared ports were probed before any socket of ours took them.
    if reuse_port && !shared && addr.port() != 0 {
        crate::server::accept::probe_free(addr).map_err(cannot)?;
    }
    let first = crate::server::accept::bind(addr, reuse_port).map_err(cannot)?;
    // Port 0: the others take the port the first was given.
    let at = first.local_addr().map_err(cannot)?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(crate::server::accept::bind(at, true).map_err(cannot)?);
    }
    Ok(sockets)
}

/// Certificate hygiene once a day (certificates approach expiry without
/// any reload), until stop.
async fn daily_hygiene(control: Arc<Control>) {
    let mut tick = tokio::time::interval(HYGIENE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now; start already inspected.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = control.stop.cancelled() => return,
            _ = tick.tick() => control.inspect_certificates_aside().await,
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

/// Runs until SIGTERM or SIGINT, then drains; SIGHUP reloads. Writes
/// `[runtime] pid_file` while running.
pub async fn run_until_signal(settings: Settings) -> Result<(), StartError> {
    let pid_file = settings.pid_file.clone();
    let signals = stop_signals();
    // One worker: everything on this thread's runtime, as no thread of
    // its own would do less.
    let proxy = match crate::server::workers::count(settings.workers) {
        1 => Proxy::start(settings).await?,
        n => {
            let workers = Workers::start(n)
                .map_err(|e| StartError(vec![format!("cannot start {n} worker threads: {e}")]))?;
            tracing::info!(workers = n, "serving on worker threads");
            Proxy::start_with_workers(settings, workers).await?
        }
    };
    if let Some(path) = &pid_file {
        match write_pid_file(path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), pid = std::process::id(), "pid file written")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot write the pid file; `snigate reload` will not find this process")
            }
        }
    }
    wait_for_stop_signal(&proxy, signals).await;
    let left = proxy.shutdown().await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!(left_open = left, "stopped");
    Ok(())
}

fn write_pid_file(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
}

/// SIGTERM, SIGINT and SIGHUP, taken over before the proxy starts: one
/// that arrives while it loads (a farm's certificates take a second) is
/// answered once it serves, instead of ending the process (SIGHUP's
/// default action). `None` when they cannot be installed.
#[cfg(unix)]
type StopSignals = Option<[tokio::signal::unix::Signal; 3]>;

#[cfg(unix)]
fn stop_signals() -> StopSignals {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => Some([term, int, hup]),
        _ => None,
    }
}

#[cfg(unix)]
async fn wait_for_stop_signal(proxy: &Proxy, signals: StopSignals) {
    let Some([mut term, mut int, mut hup]) = signals else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP");
                // The outcome is logged and shown on /healthz.
                let _ = proxy.reload().await;
            }
        }
    }
}

#[cfg(not(unix))]
type StopSignals = ();

#[cfg(not(unix))]
fn stop_signals() -> StopSignals {}

#[cfg(not(unix))]
async fn wait_for_stop_signal(_proxy: &Proxy, _signals: StopSignals) {
    let _ = tokio::signal::ctrl_c().await;
}

/// `snigate reload`: sends SIGHUP to the process whose PID is in
/// `pid_file`. Returns that PID.
#[cfg(unix)]
pub fn signal_reload(pid_file: &std::path::Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "cannot read the pid file {}: {e} (is snigate running with this configuration?)",
            pid_file.display()
        )
    })?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0).ok_or_else(|| {
        format!(
            "{}: \"{}\" is not a process id",
            pid_file.display(),
            text.trim()
        )
    })?;
    use nix::sys::signal::{kill, Signal};
    if let Err(e) = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP) {
        return Err(format!(
            "cannot signal process {pid} from {}: {e}",
            pid_file.display()
        ));
    }
    Ok(pid)
}
