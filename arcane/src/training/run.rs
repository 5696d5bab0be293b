//! `train`: one call that prepares everything a run needs and launches it through burn-train.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{Interrupter, Learner, SupervisedTraining, TrainingStrategy};

use super::checkpoint::{self, DataTokens, TrainState};
use super::components::{ArcaneComponents, ArcaneLoop, EvalHook, LoopStart};
use super::config::{HellaswagEval, TrainingConfig};
use super::ddp::{Ddp, DdpPlan};
use super::loader::{BatchSource, LmDataLoader};
use super::metrics::{StepMetric, StepMetricKind};
use super::optimizer::GroupedAdamW;
use super::outcome::{LoopOutcome, StopReason};
use super::renderer::QuietRenderer;
use super::resume::{restore, resume_point};
use super::schedule::LrSchedule;
use super::sft_source::{SftSampler, SftSet, SFT_TRAIN_FILE, SFT_VAL_FILE};
use crate::data::{TokenData, WindowSampler};
use crate::error::{ArcaneError, Result};
use crate::eval::{load_hellaswag, score_hellaswag_with, HellaswagScore};
use crate::model::Gpt;
use crate::shapes::FixedShapes;
use crate::tokenizer::ModelTokenizer;

/// File name of the resolved training config in a run folder.
pub const RUN_CONFIG: &str = "config.json";

/// Where and how to run.
#[derive(Clone)]
pub struct TrainOptions<B: AutodiffBackend> {
    /// The run folder: config, metrics, pictures, checkpoints and the final model.
    pub run_dir: PathBuf,
    /// Prepared data (the output of `prepare`).
    pub data_dir: PathBuf,
    /// Continue the run in `run_dir` from its last checkpoint (from step 0 when it has none
    /// yet). The config must be the one the checkpoint was made with, up to reporting fields
    /// and an extension ([`TrainingConfig::extended`]).
    pub resume: bool,
    /// Use burn-train's TUI dashboard (`None`: when stdout is a terminal).
    pub dashboard: Option<bool>,
    /// Peak FLOP/s of the device for MFU (`None`: `config.peak_flops`).
    pub peak_flops: Option<f64>,
    /// An extra evaluation offered after every step (HellaSwag).
    pub eval_hook: Option<EvalHook<B::InnerBackend>>,
    /// How evaluation and sampling shapes are rounded (GPU backends: bucketed).
    pub shapes: FixedShapes,
    /// Stops the run after the current step, with a checkpoint (the dashboard's quit key uses
    /// it too; a caller sets it on SIGINT / SIGTERM). `None`: burn-train's own.
    pub interrupter: Option<Interrupter>,
    /// Called once when the loop starts, after the dashboard has taken the terminal.
    pub on_start: Option<LoopStart>,
}

impl<B: AutodiffBackend> TrainOptions<B> {
    /// Options for a fresh run from `data_dir` into `run_dir`.
    pub fn new(run_dir: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            data_dir: data_dir.into(),
            resume: false,
            dashboard: None,
            peak_flops: None,
            eval_hook: None,
            shapes: FixedShapes::EXACT,
            interrupter: None,
            on_start: None,
        }
    }
}

/// Reads the resolved config a run saved.
pub fn read_run_config(run_dir: &Path) -> Result<TrainingConfig> {
    let path = run_dir.join(RUN_CONFIG);
    if !path.is_file() {
        return Err(ArcaneError::format(
            run_dir,
            "not a run folder (no config.json); start a run with `arcane-cli train --out DIR`",
        ));
    }
    TrainingConfig::from_file(&path)
}

/// Trains (or resumes) a run on `device` and reports how it ended. A run that stops on a
/// non-finite loss or a failure returns an error that says so; its last complete checkpoint
/// stays in place.
pub fn train<B: AutodiffBackend>(
    config: TrainingConfig,
    options: TrainOptions<B>,
    device: B::Device,
) -> Result<LoopOutcome> {
    train_data_parallel(config, options, vec![device])
}

/// [`train`] over several devices: each optimizer step splits its micro-batches across them
/// (data parallelism; the first device holds the model and the optimizer). The result is the
/// same as one device running all micro-batches, up to float summation order.
pub fn train_data_parallel<B: AutodiffBackend>(
    config: TrainingConfig,
    options: TrainOptions<B>,
    devices: Vec<B::Device>,
) -> Result<LoopOutcome> {
    train_on(config, options, devices, false)
}

/// [`train`] over several GPUs with Burn's NCCL data parallel (see `ddp.rs` for the
/// arithmetic): one rank per device, gradients all-reduced (summed) during the backward pass.
/// One device is a valid, degenerate run. CUDA only: it needs a build with the `ddp` feature
/// (which the CPU backends cannot be part of).
#[cfg(feature = "ddp")]
pub fn train_ddp<B>(
    config: TrainingConfig,
    options: TrainOptions<B>,
    devices: Vec<B::Device>,
) -> Result<LoopOutcome>
where
    B: AutodiffBackend + burn::tensor::backend::distributed::DistributedBackend,
{
    use burn::tensor::backend::distributed::{DistributedConfig, ReduceOperation};
    let Some(first) = devices.first().cloned() else {
        return Err(ArcaneError::InvalidInput("no training device given".into()));
    };
    // Sum, not Mean: each micro-batch's loss is already scaled by 1/P (`DdpPlan::loss_scale`).
    let all_reduce = DistributedConfig {
        all_reduce_op: ReduceOperation::Sum,
    };
    B::start_communication_server(&devices, all_reduce);
    let outcome = train_on(config, options, devices, true);
    B::close_communication_server(&first);
    outcome
}

/// [`train_data_parallel`], or with `ddp` Burn's NCCL data parallel.
pub(super) fn train_on<B: AutodiffBackend>(
    config: TrainingConfig,
    options: TrainOptions<B>,
    devices: Vec<B::Device>,
    ddp: bool,
) -> Result<LoopOutcome> {
    let Some(device) = devices.first().cloned() else {
        return Err(ArcaneError::InvalidInput("no training device given".into()));
    };
    config.validate(devices.len())?;
    let ddp = match ddp {
        true => Some(Arc::new(Ddp::new(DdpPlan::of(&config, devices.len())?))),
        false => None,
    };
    let data = RunData::<B>::open(&config, &options.data_dir, devices.len(), &device)?;
    let resume = prepare_run_dir(&config, &options, data.tokens)?;
    let tokenizer = run_tokenizer(&config)?;

    B::seed(&device, config.seed);
    let adapters_only = config.finetune.is_some();
    let mut model = build_model::<B>(&config, &device)?;
    if let (Some(state), true) = (&resume, adapters_only) {
        model = super::adapters::read_adapter_checkpoint(model, &options.run_dir, state.step)?;
    }
    let optimizer = GroupedAdamW::new(&config.optimizer, &model);
    let start = resume.as_ref().map_or(0, |s| s.step);
    let mut learner = Learner::new(model, optimizer, LrSchedule::new(&config, start));
    if let Some(state) = &resume {
        restore(
            &mut learner,
            &options.run_dir,
            state.step,
            adapters_only,
            &device,
        )?;
    }

    let eval_hook = match (&options.eval_hook, &config.hellaswag) {
        (Some(hook), _) => Some(hook.clone()),
        (None, Some(h)) => Some(hellaswag_hook::<B>(h, &tokenizer, options.shapes)?),
        (None, None) => None,
    };
    let suite_hook = match &config.eval_suite {
        Some(e) => Some(super::suite::suite_hook::<B::InnerBackend>(
            e,
            &tokenizer,
            options.shapes,
        )?),
        None => None,
    };
    let dashboard = options
        .dashboard
        .unwrap_or_else(|| std::io::stdout().is_terminal());
    let outcome = Arc::new(Mutex::new(None));
    let strategy = ArcaneLoop::<B> {
        config: config.clone(),
        run_dir: options.run_dir.clone(),
        devices,
        sampler: data.sampler.clone(),
        data_tokens: data.tokens,
        tokenizer,
        resume,
        plain: !dashboard,
        peak_flops: options.peak_flops.or(config.peak_flops),
        eval_hook,
        suite_hook,
        shapes: options.shapes,
        on_start: options.on_start.clone(),
        outcome: outcome.clone(),
        ddp: ddp.clone(),
    };
    launch(
        strategy,
        learner,
        data,
        dashboard,
        options.interrupter.clone(),
    );
    if let Some(ddp) = ddp {
        ddp.shutdown()?;
    }
    let outcome = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
    outcome_result(outcome.ok_or_else(|| {
        ArcaneError::InvalidInput("the training loop did not report an outcome".into())
    })?)
}

/// Checks the run folder against `options.resume`, creates it, clears what a killed process
/// left behind and saves the config; returns the checkpoint to resume from.
fn prepare_run_dir<B: AutodiffBackend>(
    config: &TrainingConfig,
    options: &TrainOptions<B>,
    data: DataTokens,
) -> Result<Option<TrainState>> {
    let run_dir = &options.run_dir;
    if run_dir.exists() && !run_dir.is_dir() {
        return Err(ArcaneError::format(
            run_dir,
            "is a file, not a run folder; choose another --out",
        ));
    }
    let resume = if options.resume {
        let state = resume_point(run_dir, config, data)?;
        if state.is_none() {
            eprintln!(
                "{} has no complete checkpoint yet: starting it from step 0",
                run_dir.display()
            );
        }
        state
    } else {
        if !checkpoint::checkpoint_steps(run_dir)?.is_empty() {
            return Err(ArcaneError::InvalidInput(format!(
                "{} already holds checkpoints; continue it with --resume {0} or choose another --out",
                run_dir.display()
            )));
        }
        None
    };
    std::fs::create_dir_all(run_dir).map_err(|e| ArcaneError::io(run_dir, e))?;
    crate::io::remove_orphaned_temporaries(run_dir)?;
    crate::io::remove_orphaned_temporaries(&checkpoint::checkpoint_dir(run_dir))?;
    checkpoint::remove_incomplete(run_dir)?;
    let json = serde_json::to_string_pretty(config).map_err(|e| {
        ArcaneError::InvalidConfig(format!("the config cannot be written as JSON: {e}"))
    })?;
    crate::io::write_atomic(&run_dir.join(RUN_CONFIG), json.as_bytes())?;
    Ok(resume)
}

/// The tokenizer of a run: its base's (with ChatML's tokens when its SFT data was encoded
/// with them), or GPT-2's for pre-training.
fn run_tokenizer(config: &TrainingConfig) -> Result<ModelTokenizer> {
    let base = config
        .finetune
        .as_ref()
        .map(|f| &f.base)
        .or(config.init.as_ref());
    let tokenizer = match base {
        Some(base) => crate::checkpoint::load_tokenizer(base)?,
        None => ModelTokenizer::gpt2(),
    };
    match &config.sft {
        Some(sft) if sft.tokenizer == crate::tokenizer::GPT2_CHATML_NAME => tokenizer.with_chatml(),
        _ => Ok(tokenizer),
    }
}

/// The training windows and burn-train's loaders of a run.
struct RunData<B: AutodiffBackend> {
    sampler: BatchSource,
    train: Arc<LmDataLoader<B>>,
    valid: Arc<LmDataLoader<B::InnerBackend>>,
    tokens: DataTokens,
}

impl<B: AutodiffBackend> RunData<B> {
    /// Opens the prepared data in `data_dir`: every micro-batch of the run for training (the
    /// loop slices it by step), `eval_tokens` of validation (in shorter windows when the split
    /// is too small for one; each window read once). Token ids must fit the model.
    fn open(
        config: &TrainingConfig,
        data_dir: &Path,
        n_devices: usize,
        device: &B::Device,
    ) -> Result<Self> {
        if config.sft.is_some() {
            return Self::open_sft(config, data_dir, n_devices, device);
        }
        let t = config.seq_len();
        let vocab = config.model.vocab_size;
        let train_data = TokenData::open(data_dir, "train", t)?;
        train_data.check_vocab(vocab)?;
        let (val_data, notice) = TokenData::open_fitting(data_dir, "val", t)?;
        val_data.check_vocab(vocab)?;
        if let Some(notice) = notice {
            eprintln!("note: {notice}");
        }
        let tokens = DataTokens {
            train: train_data.num_tokens() as u64,
            val: val_data.num_tokens() as u64,
        };
        let val_data = Arc::new(val_data);
        let sampler = Arc::new(WindowSampler::new(train_data, config.seed));
        let per_step = config.accumulation(n_devices)? * n_devices;
        let val_t = val_data.seq_len();
        let val_batches = (config.eval_tokens / (val_t * config.micro_batch))
            .clamp(1, val_data.num_windows().div_ceil(config.micro_batch));
        let train = Arc::new(LmDataLoader::<B>::new(
            BatchSource::Train(sampler.clone()),
            0..config.max_steps * per_step,
            config.micro_batch,
            1.0 / per_step as f64,
            device.clone(),
        ));
        let valid = Arc::new(LmDataLoader::<B::InnerBackend>::new(
            BatchSource::Val(val_data),
            0..val_batches,
            config.micro_batch,
            1.0,
            device.clone().into(),
        ));
        Ok(Self {
            sampler: BatchSource::Train(sampler),
            train,
            valid,
            tokens,
        })
    }

    /// The encoded examples of a supervised fine-tuning run: every micro-batch of the run for
    /// training, and every held-out example once for validation.
    fn open_sft(
        config: &TrainingConfig,
        data_dir: &Path,
        n_devices: usize,
        device: &B::Device,
    ) -> Result<Self> {
        // Padding follows each example's last token: causal attention keeps it from every real
        // position and it is never a target, so any id in the vocabulary will do.
        let pad = 0;
        let vocab = config.model.vocab_size;
        let sft = config.sft.as_ref().expect("an SFT run");
        let mut train_set = SftSet::open(data_dir, SFT_TRAIN_FILE, pad)?;
        if sft.packing {
            train_set = train_set.packed(sft.max_length.min(config.model.max_seq_len));
        }
        let train_set = Arc::new(train_set);
        let val_set = Arc::new(SftSet::open(data_dir, SFT_VAL_FILE, pad)?);
        train_set.check_vocab(vocab)?;
        val_set.check_vocab(vocab)?;
        let tokens = DataTokens {
            train: train_set.num_tokens() as u64,
            val: val_set.num_tokens() as u64,
        };
        let per_step = config.accumulation(n_devices)? * n_devices;
        let sampler = BatchSource::SftTrain(Arc::new(SftSampler::new(train_set, config.seed)));
        let val_batches = val_set.examples.len().div_ceil(config.micro_batch);
        let train = Arc::new(LmDataLoader::<B>::new(
            sampler.clone(),
            0..config.max_steps * per_step,
            config.micro_batch,
            1.0 / per_step as f64,
            device.clone(),
        ));
        let valid = Arc::new(LmDataLoader::<B::InnerBackend>::new(
            BatchSource::SftVal(val_set),
            0..val_batches,
            config.micro_batch,
            1.0,
            device.clone().into(),
        ));
        Ok(Self {
            sampler,
            train,
            valid,
            tokens,
        })
    }
}

/// The model a run starts from: a fresh one, or the base of a fine-tune run with fresh
/// adapters. Its lazily initialised parameters are materialised here, once, so that every
/// data-parallel copy starts from the same weights.
fn build_model<B: AutodiffBackend>(config: &TrainingConfig, device: &B::Device) -> Result<Gpt<B>> {
    config.precision.check::<B>(device)?;
    let model = match &config.finetune {
        None if config.init.is_some() => {
            let init = config.init.as_ref().expect("checked");
            let model = crate::checkpoint::load_model::<B>(init, device)?;
            if model.config() != &config.model {
                return Err(ArcaneError::InvalidConfig(format!(
                    "the run's model config differs from the model in {}; fine-tune runs take its config",
                    init.display()
                )));
            }
            model
        }
        None => config.model.init::<B>(device)?,
        Some(finetune) => {
            let base = crate::checkpoint::load_model::<B>(&finetune.base, device)?;
            if !base.config().same_model(&config.model) {
                return Err(ArcaneError::InvalidConfig(format!(
                    "the run's model config differs from the base model in {}; fine-tune runs take the base's config",
                    finetune.base.display()
                )));
            }
            crate::lora::apply_lora(base, &finetune.lora)?
        }
    };
    let mut model = crate::weights::materialize(model);
    model.precision = config.precision;
    Ok(model)
}

/// Runs the loop through burn-train's `SupervisedTraining`, with Arcane's metrics on the
/// dashboard; the loop reports its outcome through `strategy.outcome`.
fn launch<B: AutodiffBackend>(
    strategy: ArcaneLoop<B>,
    learner: Learner<ArcaneComponents<B>>,
    data: RunData<B>,
    dashboard: bool,
    interrupter: Option<Interrupter>,
) {
    let c = &strategy.config;
    let (mfu, hellaswag) = (strategy.peak_flops.is_some(), c.hellaswag.is_some());
    let num_epochs = c.max_steps.div_ceil(c.eval_every);
    let run_dir = strategy.run_dir.clone();
    let mut training = SupervisedTraining::new(run_dir, data.train, data.valid)
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
        .metric_train_numeric(StepMetric::new(StepMetricKind::Loss))
        .metric_valid_numeric(StepMetric::new(StepMetricKind::Loss))
        .metric_valid_numeric(StepMetric::new(StepMetricKind::Perplexity))
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(StepMetric::new(StepMetricKind::GradNorm))
        .metric_train_numeric(StepMetric::new(StepMetricKind::TokensPerSecond))
        .num_epochs(num_epochs);
    if mfu {
        training = training.metric_train_numeric(StepMetric::new(StepMetricKind::Mfu));
    }
    if hellaswag {
        training = training.metric_valid_numeric(StepMetric::new(StepMetricKind::HellaswagAccNorm));
    }
    if !dashboard {
        training = training.renderer(QuietRenderer);
    }
    if let Some(interrupter) = interrupter {
        training = training.with_interrupter(interrupter);
    }
    let _ = training.launch(learner);
}

/// The caller's view of an outcome: an error for a run that stopped on a non-finite loss or a
/// failure (its last complete checkpoint stays in place).
fn outcome_result(outcome: LoopOutcome) -> Result<LoopOutcome> {
    match &outcome.stop {
        StopReason::Finished | StopReason::Interrupted => Ok(outcome),
        StopReason::NonFinite { step, loss, grad_norm } => Err(ArcaneError::InvalidInput(format!(
            "training stopped at step {step}: the loss is {loss} and the gradient norm {grad_norm}; nothing after step {} was evaluated or checkpointed. \
             The last good checkpoint (step {}) is intact: lower the learning rate or check the data, then --resume",
            step - 1,
            outcome.checkpoint.map_or("none".into(), |s| s.to_string())
        ))),
        StopReason::Failed(e) => Err(ArcaneError::InvalidInput(format!(
            "training failed at step {}: {e}; {}",
            outcome.step,
            match outcome.checkpoint {
                Some(step) => format!("the last good checkpoint (step {step}) is intact: fix the cause, then --resume"),
                None => "no checkpoint was written yet".into(),
            }
        ))),
    }
}

/// HellaSwag every `h.every` steps on the first `h.limit` examples; the file is read (and
/// checked) once, before training starts.
fn hellaswag_hook<B: AutodiffBackend>(
    h: &HellaswagEval,
    tokenizer: &ModelTokenizer,
    shapes: FixedShapes,
) -> Result<EvalHook<B::InnerBackend>> {
    let (mut examples, _) = load_hellaswag(&h.data, false)?;
    if let Some(limit) = h.limit {
        examples.truncate(limit);
    }
    let (every, batch, tokenizer) = (h.every, h.batch, tokenizer.clone());
    Ok(Arc::new(move |model, step| {
        if step % every != 0 {
            return Ok(None);
        }
        let predictions =
            score_hellaswag_with(model, &tokenizer, &examples, batch, shapes, |_| {})?;
        let score = HellaswagScore::of(&predictions);
        Ok(Some((score.n, score.acc, score.acc_norm)))
    }))
}
