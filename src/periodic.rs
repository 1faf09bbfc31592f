//! The tick loop of background services that look for due work on a period (the
//! registry's probes and lookups, client-credentials refreshes): one place that says how a
//! late tick behaves and how the loop ends. A leaf module: it imports nothing from the
//! crate.

use pingora_core::server::ShutdownWatch;
use std::time::Duration;

/// Calls `tick` every `period` (the first time at once) until the server shuts down. A
/// tick that comes late, on a busy runtime, delays the next one rather than firing a burst
/// to catch up.
pub async fn every(period: Duration, shutdown: &mut ShutdownWatch, mut tick: impl FnMut()) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => tick(),
        }
    }
}
