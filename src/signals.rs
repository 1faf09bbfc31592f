//! ficus's signal handling, in place of pingora's stock one.
//!
//! - SIGTERM: drain. Pingora's stock handling sleeps for the whole grace period even when
//!   nothing is in flight; ficus stops accepting, waits until in-flight requests reach zero
//!   or the configured grace period ends, and exits.
//! - SIGQUIT: binary upgrade when the process runs with `--upgrade-socket`: hand the
//!   listening sockets to the new process, wait until it serves, then drain as for SIGTERM
//!   ([`crate::upgrade`]). A failed hand-over leaves this process serving. Without
//!   `--upgrade-socket`, SIGQUIT drains like SIGTERM.
//! - SIGINT: exit at once, also while draining or handing over.
//! - SIGHUP: reload the config ([`crate::reload`], not here).

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::Shared;
use crate::upgrade::HandOver;

/// How often the drain watcher checks the in-flight count after SIGTERM.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Waits for the signal that ends the process (see the module docs).
pub struct Signals {
    pub shared: Arc<Shared>,
    /// The sockets to hand over on SIGQUIT (`--upgrade-socket`).
    pub handover: Option<Arc<HandOver>>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        let signal = loop {
            tokio::select! {
                _ = int.recv() => stop_now(),
                _ = term.recv() => break self.drain("SIGTERM"),
                _ = quit.recv() => {
                    let Some(handover) = self.handover.clone() else {
                        break self.drain("SIGQUIT");
                    };
                    tracing::info!("SIGQUIT: handing the listening sockets to a new process");
                    let sent = tokio::task::spawn_blocking(move || handover.run());
                    let outcome = tokio::select! {
                        _ = int.recv() => stop_now(),
                        r = sent => r,
                    };
                    match outcome {
                        Ok(Ok(pid)) => {
                            tracing::info!(pid, "upgrade: the new process serves");
                            self.shared.set_handed_over();
                            break self.drain("upgrade");
                        }
                        Ok(Err(e)) => {
                            tracing::error!("upgrade failed, still serving: {e}")
                        }
                        Err(e) => tracing::error!("upgrade failed, still serving: {e}"),
                    }
                }
            }
        };
        // Ctrl-C still means "stop now" while draining. pingora's server runtime is a
        // multi-thread one, so this task keeps running after `recv` has returned.
        tokio::spawn(async move {
            int.recv().await;
            stop_now();
        });
        signal
    }
}

/// Exits directly: pingora's fast shutdown can leave accept loops spinning on a runtime that
/// is shutting down. Ctrl-C means "stop now".
fn stop_now() -> ! {
    tracing::info!("SIGINT: stopping now");
    crate::logging::flush();
    std::process::exit(0);
}

impl Signals {
    /// Marks the gateway as draining and starts the watcher that exits the process once the
    /// last in-flight request is done or the grace period is over. Pingora closes the
    /// listeners when this returns.
    fn drain(&self, signal: &str) -> ShutdownSignal {
        let grace = self.shared.runtime().config.gateway.grace_period;
        tracing::info!(
            ?grace,
            inflight = self.shared.inflight(),
            "{signal}: draining"
        );
        self.shared.set_draining();
        let shared = self.shared.clone();
        let deadline = Instant::now() + grace;
        std::thread::spawn(move || {
            // Give pingora a moment to close the listening sockets before the first check, so
            // a request accepted just before the signal is counted.
            std::thread::sleep(DRAIN_POLL * 5);
            loop {
                let inflight = shared.inflight();
                if inflight == 0 {
                    tracing::info!("drained: no requests in flight, exiting");
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        inflight,
                        "grace period over, exiting with requests in flight"
                    );
                    break;
                }
                std::thread::sleep(DRAIN_POLL);
            }
            crate::logging::flush();
            std::process::exit(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}
