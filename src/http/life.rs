//! What carries a client connection across reloads: the state its next
//! request is served with, rebound to the new state when a reload keeps the
//! connection's listener and certificate, and the moment it must close
//! ([`Life::ended`]). Shared by the HTTP/1.1 and h2 serving loops.

use std::future::Future;
use std::sync::Arc;

use crate::conn::ConnInfo;
use crate::http::h1::Retirement;
use crate::state::{Current, State};

/// What a connection's next request is served with: the state, and the
/// connection's facts in that state's terms (listener and certificate
/// indexes). A reload replaces it (see [`successor`]).
pub(crate) struct Bound {
    pub state: Arc<State>,
    pub info: Arc<ConnInfo>,
}

/// What carries a connection across reloads.
pub(crate) struct Life {
    pub bound: Arc<arc_swap::ArcSwap<Bound>>,
    pub current: Current,
}

impl Life {
    /// Waits until the connection's state is retired and the connection
    /// cannot carry on with the current one (or the proxy stops).
    pub async fn ended(&self) {
        loop {
            let retire = self.bound.load().state.retire.clone();
            retire.cancelled().await;
            if !rebind(&self.bound, &self.current) {
                return;
            }
        }
    }
}

/// What a request is served with: the connection's bound state, rebound
/// first when a reload has retired it. [`Life::ended`] rebinds too, but it
/// runs when the connection's task next turns, which on a worker thread
/// may come after the client's next request; a reload that has returned
/// must serve that request with the new state.
pub(crate) fn for_request(bound: &arc_swap::ArcSwap<Bound>, current: &Current) -> Arc<Bound> {
    rebind(bound, current);
    bound.load_full()
}

/// Rebinds `bound` to the current state if its own was retired and the
/// connection can carry on with the current one. `false`: it cannot (its
/// listener or certificate is gone, or the proxy stops).
fn rebind(bound: &arc_swap::ArcSwap<Bound>, current: &Current) -> bool {
    let now = bound.load_full();
    if !now.state.retire.is_cancelled() {
        return true;
    }
    let next = current.load_full();
    if now.state.stop.is_cancelled() || Arc::ptr_eq(&next, &now.state) {
        return false;
    }
    match successor(&now.state, &now.info, &next) {
        Some(info) => {
            bound.store(Arc::new(Bound {
                state: next,
                info: Arc::new(info),
            }));
            true
        }
        None => false,
    }
}

impl Retirement for Life {
    fn retired(&self) -> impl Future<Output = ()> + Send + '_ {
        self.ended()
    }
}

/// The connection's facts in the terms of `next`, the state a reload put in
/// place of `old`, or `None` when the connection cannot carry on with it:
/// its listener is gone or serves another mode, or the certificate it was
/// served is gone or now speaks for other names (the 421 check would judge
/// by names the client was never shown).
fn successor(old: &State, info: &ConnInfo, next: &State) -> Option<ConnInfo> {
    let was = &old.listener(info.listener).settings;
    let listener =
        next.find_listener(|l| l.settings.name == was.name && l.settings.mode == was.mode)?;
    let certificate = match info.certificate {
        None => None,
        Some(id) => {
            let served = old.certificates.get(id);
            let now = next.certificates.by_name(&served.name)?;
            if next.certificates.get(now).names != served.names {
                return None;
            }
            Some(now)
        }
    };
    Some(ConnInfo {
        listener,
        certificate,
        ..info.clone()
    })
}
