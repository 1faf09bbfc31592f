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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::runtime::Shared;
use crate::server::ServerError;
use crate::upgrade::HandOver;

/// Ignores SIGHUP from here until the config watcher listens for it (its handler replaces
/// this one): a reload signal sent while the gateway is still reading its config or
/// starting (`systemctl reload` right after `start`) must not meet the default action,
/// which ends the process. A file edited in that window is reloaded once the watcher runs
/// ([`crate::reload`]). Call first thing, before any thread starts.
pub fn hold_hangups() {
    // SAFETY: sets the disposition of one signal to SIG_IGN (no handler code runs), before
    // the process starts other threads.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// How often the drain watcher checks the in-flight count after SIGTERM.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// A signal that ends or hands over the process (SIGINT is acted on where it arrives).
#[derive(Debug, Clone, Copy)]
enum Received {
    Term,
    Quit,
}

/// Waits for the signal that ends the process (see the module docs).
pub struct Signals {
    shared: Arc<Shared>,
    /// The sockets to hand over on SIGQUIT (`--upgrade-socket`).
    handover: Option<Arc<HandOver>>,
    received: Mutex<Option<mpsc::UnboundedReceiver<Received>>>,
}

impl Signals {
    /// Installs the handlers now, on a thread of their own, before any service starts: a
    /// signal sent as soon as the ready file appears is then queued, never lost, and never
    /// meets the default action (for SIGQUIT, ending the process with a core dump).
    pub fn install(
        shared: Arc<Shared>,
        handover: Option<Arc<HandOver>>,
    ) -> Result<Signals, ServerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (installed_tx, installed) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ficus-signals".into())
            .spawn(move || watch(tx, installed_tx))
            .map_err(|e| ServerError::Start(format!("signal handling: {e}")))?;
        installed
            .recv()
            .map_err(|_| ServerError::Start("signal handling did not start".into()))?
            .map_err(|e| ServerError::Start(format!("cannot install signal handlers: {e}")))?;
        Ok(Signals {
            shared,
            handover,
            received: Mutex::new(Some(rx)),
        })
    }
}

/// The signal thread: forwards SIGTERM and SIGQUIT, and exits the process on SIGINT
/// (whatever else is under way: a drain, a hand-over).
fn watch(
    tx: mpsc::UnboundedSender<Received>,
    installed: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = installed.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let (mut term, mut int, mut quit) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) {
            (Ok(t), Ok(i), Ok(q)) => (t, i, q),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                let _ = installed.send(Err(e));
                return;
            }
        };
        let _ = installed.send(Ok(()));
        loop {
            let got = tokio::select! {
                _ = int.recv() => stop_now(),
                _ = term.recv() => Received::Term,
                _ = quit.recv() => Received::Quit,
            };
            if tx.send(got).is_err() {
                return;
            }
        }
    });
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let Some(mut received) = self.received.lock().ok().and_then(|mut r| r.take()) else {
            return ShutdownSignal::FastShutdown;
        };
        loop {
            match received.recv().await {
                Some(Received::Term) => return self.drain("SIGTERM"),
                Some(Received::Quit) => {
                    let Some(handover) = self.handover.clone() else {
                        return self.drain("SIGQUIT");
                    };
                    tracing::info!("SIGQUIT: handing the listening sockets to a new process");
                    match tokio::task::spawn_blocking(move || handover.run()).await {
                        Ok(Ok(pid)) => {
                            tracing::info!(pid, "upgrade: the new process serves");
                            self.shared.set_handed_over();
                            return self.drain("upgrade");
                        }
                        Ok(Err(e)) => tracing::error!("upgrade failed, still serving: {e}"),
                        Err(e) => tracing::error!("upgrade failed, still serving: {e}"),
                    }
                }
                None => return ShutdownSignal::FastShutdown,
            }
        }
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
                // Requests in flight, and connections accepted before the listeners closed
                // whose first request is still to come (a TLS handshake, a head on its way).
                if shared.busy() == 0 {
                    tracing::info!("drained: no requests in flight, exiting");
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        inflight = shared.inflight(),
                        busy = shared.busy(),
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
