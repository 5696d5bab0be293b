//! The checkpoint writer of a run: model, optimizer and schedule through burn-train's
//! `LearningCheckpointer` on background threads, then the state file that completes a
//! checkpoint, then pruning. A fine-tune run writes its adapters alone instead of the model
//! (the frozen base is the base model's file). The files are described in `checkpoint.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::Backend;
use burn::record::Record;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::{AsyncCheckpointer, Checkpointer, CheckpointerError};
use burn::train::metric::store::EventStoreClient;
use burn::train::{Interrupter, Learner, LearningCheckpointer};

use super::adapters::write_adapter_checkpoint;
use super::checkpoint::{
    checkpoint_dir, prune, write_state, AtomicCheckpointer, SaveEveryCall, SaveTracker, TrainState,
};
use super::components::ArcaneComponents;
use crate::error::Result;

/// The checkpoints of one run: model (or adapters), optimizer and schedule, then the state
/// file that completes them, then pruning.
pub struct RunCheckpointer<B: AutodiffBackend> {
    inner: LearningCheckpointer<ArcaneComponents<B>>,
    tracker: Arc<SaveTracker>,
    run_dir: PathBuf,
    adapters_only: bool,
}

impl<B: AutodiffBackend> RunCheckpointer<B> {
    /// The checkpointer of the run in `run_dir`; `adapters_only` for a fine-tune run.
    pub fn new(run_dir: &Path, interrupter: &Interrupter, adapters_only: bool) -> Self {
        let tracker = Arc::new(SaveTracker::default());
        let dir = checkpoint_dir(run_dir);
        let model = if adapters_only {
            AsyncCheckpointer::new(Discard {
                tracker: tracker.clone(),
            })
        } else {
            writer(&dir, "model", &tracker, interrupter)
        };
        Self {
            inner: LearningCheckpointer::new(
                model,
                writer(&dir, "optim", &tracker, interrupter),
                writer(&dir, "scheduler", &tracker, interrupter),
                Box::new(SaveEveryCall),
            ),
            tracker,
            run_dir: run_dir.to_path_buf(),
            adapters_only,
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
        if self.adapters_only {
            write_adapter_checkpoint(&learner.model(), &self.run_dir, state.step)?;
        }
        self.inner.checkpoint(learner, state.step, store);
        self.tracker
            .wait(&["model", "optim", "scheduler"], state.step)?;
        crate::io::crash_point(|| format!("before-state:{}", state.step));
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

/// The model "writer" of a fine-tune run: the frozen base is not copied into checkpoints (the
/// adapters are written beside them), so it only reports the save as done.
struct Discard {
    tracker: Arc<SaveTracker>,
}

impl<R: Record<B>, B: Backend> Checkpointer<R, B> for Discard {
    fn save(&self, step: usize, _record: R) -> std::result::Result<(), CheckpointerError> {
        self.tracker.report("model", Ok(step));
        Ok(())
    }

    fn delete(&self, _step: usize) -> std::result::Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(
        &self,
        _step: usize,
        _device: &B::Device,
    ) -> std::result::Result<R, CheckpointerError> {
        Err(CheckpointerError::Unknown(
            "a fine-tune checkpoint holds adapters, not the model".into(),
        ))
    }
}
