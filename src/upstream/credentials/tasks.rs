//! The background service that keeps client-credentials tokens fresh: at start it asks
//! for every service's first token, so the first request does not wait, and afterwards
//! it refreshes each token when it is due.
//!
//! One loop per process. Each tick it visits the token sources of the *current* snapshot
//! and lets each decide whether a fetch is due ([`TokenSource::maintain`]); the source
//! itself guarantees one fetch in flight and the backoff after failures. So a reload can
//! neither duplicate nor orphan refresh work: a source no snapshot uses is simply not
//! visited any more, and a source a reload kept is the same source.

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

use super::TokenSource;

/// How often due refreshes are looked for; a refresh starts at most this late.
const TICK: Duration = Duration::from_millis(100);

/// Where the service finds the current snapshot's token sources.
pub trait CredentialSources: Send + Sync + 'static {
    fn token_sources(&self) -> Vec<Arc<TokenSource>>;
}

/// Fetches and refreshes the tokens of the services that have client credentials.
pub struct CredentialTasks<S: CredentialSources> {
    sources: Arc<S>,
}

impl<S: CredentialSources> CredentialTasks<S> {
    pub fn new(sources: Arc<S>) -> Self {
        CredentialTasks { sources }
    }
}

#[async_trait]
impl<S: CredentialSources> BackgroundService for CredentialTasks<S> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::periodic::every(TICK, &mut shutdown, || {
            for source in self.sources.token_sources() {
                source.maintain();
            }
        })
        .await;
    }
}
