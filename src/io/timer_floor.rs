//! A standing one-second timer that spares the time driver a wake-up per
//! connection.
//!
//! tokio wakes its I/O driver (a write to an eventfd, then one more
//! `epoll_wait`) whenever a timer is set earlier than the earliest deadline
//! the driver last parked with — even when the driver is not parked but
//! busy running the very task that set the timer. With no timer pending, a
//! lone connection's hello deadline and then its upstream connect deadline
//! each cost that: four system calls of the 53 a passthrough connection
//! made (strace, README "Performance"). A timer that is never more than a
//! second away keeps every deadline of a second or longer from being the
//! earliest, so setting one is an insert into the wheel and nothing more;
//! a shorter deadline still wakes the driver, as it must. The price is one
//! timer wake-up a second per process.

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// How far away the standing deadline may be.
pub const FLOOR: Duration = Duration::from_secs(1);

/// Keeps a deadline at most [`FLOOR`] away until `stop`.
pub async fn hold(stop: CancellationToken) {
    let mut tick = tokio::time::interval(FLOOR);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}
