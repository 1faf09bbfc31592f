//! The board's sampler: a background service that reads every route's counters into the
//! board's history once per sample period, from the snapshot current at that moment (so a
//! reload's new routes are picked up and removed ones dropped at the next sample).

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;

use crate::runtime::Shared;

pub struct BoardSampler {
    shared: Arc<Shared>,
}

impl BoardSampler {
    pub fn new(shared: Arc<Shared>) -> BoardSampler {
        BoardSampler { shared }
    }
}

#[async_trait]
impl BackgroundService for BoardSampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let board = &self.shared.board;
        crate::periodic::every(board.period(), &mut shutdown, || {
            board.sample(&self.shared.runtime());
        })
        .await;
    }
}
