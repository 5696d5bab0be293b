//! The checkpoint writer of a run: model, optimizer and schedule through burn-train's
//! `LearningCheckpointer` on background threads, then the state file that completes a
//! checkpoint, then pruning. The files themselves are described in `checkpoint.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::Backend;
use burn::record::Record;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::AsyncCheckpointer;
use burn::train::metric::store::EventStoreClient;
use burn::train::{Interrupter, Learner, LearningCheckpointer};

use super::checkpoint::{
    checkpoint_dir, prune, write_state, AtomicCheckpointer, SaveEveryCall, SaveTracker, TrainState,
};
use super::components::ArcaneComponents;
use crate::error::Result;

/// The checkpoints of one run: model, optimizer and schedule through burn-train's
/// checkpointer (written on background threads), then the state file that completes them,
/// then pruning.
pub struct RunCheckpointer<B: AutodiffBackend> {
    inner: LearningCheckpointer<ArcaneComponents<B>>,
    tracker: Arc<SaveTracker>,
    run_dir: PathBuf,
}

impl<B: AutodiffBackend> RunCheckpointer<B> {
    /// The checkpointer of the run in `run_dir`.
    pub fn new(run_dir: &Path, interrupter: &Interrupter) -> Self {
        let tracker = Arc::new(SaveTracker::default());
        let dir = checkpoint_dir(run_dir);
        Self {
            inner: LearningCheckpointer::new(
                writer(&dir, "model", &tracker, interrupter),
                writer(&dir, "optim", &tracker, interrupter),
                writer(&dir, "scheduler", &tracker, interrupter),
                Box::new(SaveEveryCall),
            ),
            tracker,
            run_dir: run_dir.to_path_buf(),
        }
    }

    /// Writes checkpoint `state.step` of `learner`, waits until its files are durable, writes
    /// the state file that completes it, and keeps only the newest `keep` checkpoints.
    pub fn save(
        &mut self,
        learner: &Learner<ArcaneComponents<B>>,
        store: &EventStoreClient,
        state: &TrainState,
        keep: usize,
    ) -> Result<()> {
        self.inner.checkpoint(learner, state.step, store);
        self.tracker
            .wait(&["model", "optim", "scheduler"], state.step)?;
        write_state(&self.run_dir, state)?;
        prune(&self.run_dir, keep)
    }
}

/// A background writer of `dir/NAME-STEP.mpk` files that reports to `tracker`.
fn writer<R: Record<B> + 'static, B: Backend>(
    dir: &Path,
    name: &str,
    tracker: &Arc<SaveTracker>,
    interrupter: &Interrupter,
) -> AsyncCheckpointer<R, B> {
    AsyncCheckpointer::new(AtomicCheckpointer::new(dir, name, tracker.clone()))
        .with_interrupter(interrupter.clone())
}
