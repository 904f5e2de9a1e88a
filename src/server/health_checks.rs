//! The active health-check runner: one task per server of every upstream
//! with `health`, for as long as the state it serves is current. The check
//! itself and the health state are [`crate::upstream::health`]'s.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::route::UpstreamId;
use crate::state::State;
use crate::upstream::health::Target;

/// Starts a checker for every server of every upstream with `health`; they
/// stop when `cancel` is cancelled.
pub fn start(state: &Arc<State>, cancel: &CancellationToken) {
    for (index, upstream) in state.upstreams.iter().enumerate() {
        for target in upstream.health_targets(UpstreamId::new(index)) {
            tracing::debug!(upstream = %target.health.upstream, server = %target.health.server,
                path = %target.settings.path, interval = ?target.settings.interval, "health checks");
            tokio::spawn(watch(state.clone(), target, cancel.clone()));
        }
    }
}

/// Checks one server every `interval` until cancelled.
async fn watch(state: Arc<State>, target: Target, cancel: CancellationToken) {
    let upstream = state.upstream(target.upstream);
    let mut tick = tokio::time::interval(target.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let timeout = target.settings.timeout;
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(timeout, upstream.health_check(target.server, &target.settings)) => r,
        };
        match outcome {
            Ok(Ok(())) => target.health.check_passed(),
            Ok(Err(reason)) => target.health.check_failed(&reason),
            Err(_) => target
                .health
                .check_failed(&format!("no response within {timeout:?}")),
        }
    }
}
