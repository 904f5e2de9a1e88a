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
            if rebind(&self.bound, &self.current).is_err() {
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
    match rebind(bound, current) {
        Ok(bound) | Err(bound) => bound,
    }
}

/// Rebinds `bound` to the current state if its own was retired and the
/// connection can carry on with the current one; `Ok` with what it is now
/// bound to. `Err` with the retired one: it cannot (its listener or
/// certificate is gone, or the proxy stops).
fn rebind(bound: &arc_swap::ArcSwap<Bound>, current: &Current) -> Result<Arc<Bound>, Arc<Bound>> {
    let now = bound.load_full();
    if !now.state.retire.is_cancelled() {
        return Ok(now);
    }
    let next = current.load_full();
    if now.state.stop.is_cancelled() || Arc::ptr_eq(&next, &now.state) {
        return Err(now);
    }
    match successor(&now.state, &now.info, &next) {
        Some(info) => {
            let rebound = Arc::new(Bound {
                state: next,
                info: Arc::new(info),
            });
            bound.store(rebound.clone());
            Ok(rebound)
        }
        None => Err(now),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use arc_swap::ArcSwap;

    /// A state with an HTTP listener "web" (and "gone" if `with_gone`)
    /// in front of `server`.
    fn state(server: &str, with_gone: bool) -> Arc<State> {
        let gone = if with_gone {
            "[[listener]]\nname = \"gone\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n"
        } else {
            ""
        };
        let text = format!(
            "[[listener]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             default_upstream = \"farm\"\n{gone}\
             [[upstream]]\nname = \"farm\"\nservers = [\"{server}\"]\n"
        );
        let settings = Settings::parse(std::path::Path::new("life.toml"), &text).unwrap();
        Arc::new(State::build(settings).unwrap())
    }

    fn bound_on(state: &Arc<State>, listener: &str) -> ArcSwap<Bound> {
        let listener = state
            .find_listener(|l| l.settings.name == listener)
            .unwrap();
        let addr = "127.0.0.1:1".parse().unwrap();
        ArcSwap::from_pointee(Bound {
            state: state.clone(),
            info: Arc::new(ConnInfo {
                conn: 1,
                listener,
                peer: addr,
                local: addr,
                sni: None,
                certificate: None,
                tls: false,
                affinity: Default::default(),
                report: None,
            }),
        })
    }

    /// The request that follows a reload is served with the new state even
    /// when [`Life::ended`] has not run yet (worker threads); a connection
    /// whose listener the reload removed keeps its state for the request
    /// racing the close.
    #[test]
    fn a_request_after_a_reload_is_served_with_the_new_state() {
        let old = state("127.0.0.1:8001", true);
        let current: Current = Arc::new(ArcSwap::new(old.clone()));
        let web = bound_on(&old, "web");
        let gone = bound_on(&old, "gone");
        assert!(Arc::ptr_eq(&for_request(&web, &current).state, &old));

        let new = state("127.0.0.1:8002", false);
        current.store(new.clone());
        assert!(
            Arc::ptr_eq(&for_request(&web, &current).state, &old),
            "not retired yet: the swap alone changes nothing"
        );
        old.retire.cancel();
        let served = for_request(&web, &current);
        assert!(Arc::ptr_eq(&served.state, &new));
        assert_eq!(new.listener(served.info.listener).settings.name, "web");
        assert!(Arc::ptr_eq(&web.load().state, &new), "rebound for good");
        assert!(Arc::ptr_eq(&for_request(&gone, &current).state, &old));
    }
}
