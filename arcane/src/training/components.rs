//! The types the pieces of the training loop share: burn-train's learning components of an
//! Arcane run, and [`ArcaneLoop`], the strategy with everything it needs besides the Learner.
//! The loop itself is in `strategy.rs`; one optimizer step in `stepping.rs`, its report in
//! `report.rs`, evaluations in `evaluate.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burn::tensor::backend::AutodiffBackend;
use burn::train::{LearningComponentsMarker, SupervisedTrainingEventProcessor};

use super::checkpoint::{DataTokens, TrainState};
use super::config::TrainingConfig;
use super::ddp::Ddp;
use super::optimizer::GroupedAdamW;
use super::outcome::LoopOutcome;
use super::schedule::LrSchedule;
use crate::model::Gpt;
use crate::tokenizer::ModelTokenizer;

/// burn-train's learning components of an Arcane run.
pub type ArcaneComponents<B> =
    LearningComponentsMarker<B, LrSchedule, Gpt<B>, GroupedAdamW<Gpt<B>, B>>;

/// An extra evaluation offered after every step with the step number (HellaSwag): returns
/// `Some((n, acc, acc_norm))` when it ran, `None` when it is not due.
pub type EvalHook<B> =
    Arc<dyn Fn(&Gpt<B>, usize) -> crate::Result<Option<(usize, f64, f64)>> + Send + Sync>;

/// The lm-eval suite offered after every step with the step number: returns `Some((n,
/// values))` (documents per task, `<task>/<metric>` and `core_subset`) when it ran, `None`
/// when it is not due.
pub type SuiteHook<B> = Arc<
    dyn Fn(&Gpt<B>, usize) -> crate::Result<Option<(usize, BTreeMap<String, f64>)>> + Send + Sync,
>;

/// A callback run once when the loop starts (after burn-train's dashboard has set up the
/// terminal).
pub type LoopStart = Arc<dyn Fn() + Send + Sync>;

/// The strategy and everything it needs besides the Learner.
pub struct ArcaneLoop<B: AutodiffBackend> {
    /// Resolved configuration.
    pub config: TrainingConfig,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The training devices; the first holds the model and the optimizer, the others compute
    /// gradients on copies of it (data parallelism).
    pub devices: Vec<B::Device>,
    /// The training batches (for the data position in checkpoints).
    pub sampler: super::loader::BatchSource,
    /// The size of the data, recorded in checkpoints.
    pub data_tokens: DataTokens,
    /// The tokenizer of the samples shown at evaluations.
    pub tokenizer: ModelTokenizer,
    /// The checkpoint this run resumes from.
    pub resume: Option<TrainState>,
    /// Print plain log lines (no dashboard).
    pub plain: bool,
    /// Peak FLOP/s of the device, for MFU.
    pub peak_flops: Option<f64>,
    /// Extra evaluation offered after every step (it decides when it runs).
    pub eval_hook: Option<EvalHook<B::InnerBackend>>,
    /// The lm-eval suite offered after every step (it decides when it runs).
    pub suite_hook: Option<SuiteHook<B::InnerBackend>>,
    /// How sampling shapes are rounded (GPU backends: bucketed).
    pub shapes: crate::shapes::FixedShapes,
    /// Called once when the loop starts.
    pub on_start: Option<LoopStart>,
    /// Where the outcome is reported.
    pub outcome: Arc<Mutex<Option<LoopOutcome>>>,
    /// NCCL data parallelism (`ddp.rs`): `None` gathers the gradients of all devices on the
    /// first one.
    pub(crate) ddp: Option<Arc<Ddp<B>>>,
}

/// burn-train's event processor of an Arcane run (dashboard, metric files).
pub type Processor<B> = SupervisedTrainingEventProcessor<ArcaneComponents<B>>;
