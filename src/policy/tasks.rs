//! Background work of policy instances (key-set refreshes, token renewals).
//!
//! One service per process. Whenever the config snapshot changes it looks at the
//! instances the new snapshot uses: an instance seen for the first time gets its
//! [`Plugin::background`](ficus_plugins::Plugin::background) future spawned, an instance
//! no snapshot uses any more gets its task aborted. An instance a reload kept keeps its
//! one task, so a reload never duplicates or restarts background work.

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

use super::PolicyInstance;

/// How often the service checks whether the snapshot changed (a reload is rare; one
/// atomic load per tick).
const TICK: Duration = Duration::from_millis(50);

/// Where the service reads the current snapshot's policies and its generation.
pub trait PolicySource: Send + Sync + 'static {
    fn generation(&self) -> u64;
    fn policies(&self) -> Vec<Arc<PolicyInstance>>;
}

/// Runs policy instances' background work for as long as they are in use.
pub struct PolicyTasks<S: PolicySource> {
    source: Arc<S>,
    running: Mutex<HashMap<u64, JoinHandle<()>>>,
}

impl<S: PolicySource> PolicyTasks<S> {
    pub fn new(source: Arc<S>) -> Self {
        PolicyTasks {
            source,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts tasks for new instances, aborts those of instances no longer in use.
    /// Returns how many tasks run afterwards.
    pub fn sync(&self) -> usize {
        let current = self.source.policies();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|id, task| {
            let keep = current.iter().any(|p| p.id == *id);
            if !keep {
                task.abort();
            }
            keep
        });
        for p in current {
            if running.contains_key(&p.id) {
                continue;
            }
            if let Some(work) = p.plugin.clone().background() {
                tracing::debug!(policy = %format!("{}.{}", p.kind, p.name), "background work started");
                running.insert(p.id, tokio::spawn(work));
            }
        }
        running.len()
    }

    fn stop_all(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for (_, task) in running.drain() {
            task.abort();
        }
    }
}

#[async_trait]
impl<S: PolicySource> BackgroundService for PolicyTasks<S> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen = None;
        loop {
            let generation = self.source.generation();
            if seen != Some(generation) {
                seen = Some(generation);
                self.sync();
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ficus_plugins::{async_trait, Background, Hooks, Plugin};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// A plugin whose background work counts how many copies of it are running.
    struct Ticker {
        live: Arc<AtomicUsize>,
    }

    struct LiveGuard(Arc<AtomicUsize>);
    impl Drop for LiveGuard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Plugin for Ticker {
        fn kind(&self) -> &'static str {
            "ticker"
        }
        fn hooks(&self) -> Hooks {
            Hooks::default()
        }
        fn background(self: Arc<Self>) -> Option<Background> {
            let live = self.live.clone();
            Some(Box::pin(async move {
                live.fetch_add(1, Ordering::SeqCst);
                let _guard = LiveGuard(live);
                std::future::pending::<()>().await;
            }))
        }
    }

    struct Source {
        generation: AtomicU64,
        policies: Mutex<Vec<Arc<PolicyInstance>>>,
    }

    impl PolicySource for Source {
        fn generation(&self) -> u64 {
            self.generation.load(Ordering::SeqCst)
        }
        fn policies(&self) -> Vec<Arc<PolicyInstance>> {
            self.policies.lock().unwrap().clone()
        }
    }

    fn instance(id: u64, live: &Arc<AtomicUsize>) -> Arc<PolicyInstance> {
        Arc::new(PolicyInstance {
            kind: "ticker",
            name: "t".into(),
            stage: ficus_plugins::Stage::Auth,
            id,
            built: std::time::SystemTime::now(),
            plugin: Arc::new(Ticker { live: live.clone() }),
            settings: Arc::new(()),
        })
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn kept_instances_keep_one_task_removed_ones_stop() {
        let live = Arc::new(AtomicUsize::new(0));
        let a = instance(1, &live);
        let source = Arc::new(Source {
            generation: AtomicU64::new(1),
            policies: Mutex::new(vec![a.clone()]),
        });
        let tasks = PolicyTasks::new(source.clone());
        assert_eq!(tasks.sync(), 1);
        settle().await;
        assert_eq!(live.load(Ordering::SeqCst), 1);
        // A reload that keeps the instance: still one task.
        assert_eq!(tasks.sync(), 1);
        settle().await;
        assert_eq!(live.load(Ordering::SeqCst), 1);
        // A reload that replaces it: the old task stops, the new one starts.
        *source.policies.lock().unwrap() = vec![instance(2, &live)];
        assert_eq!(tasks.sync(), 1);
        settle().await;
        assert_eq!(live.load(Ordering::SeqCst), 1);
        // Removed altogether: nothing runs.
        source.policies.lock().unwrap().clear();
        assert_eq!(tasks.sync(), 0);
        settle().await;
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }
}
