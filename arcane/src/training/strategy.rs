//! The training loop, as a burn-train `SupervisedLearningStrategy`.
//!
//! burn-train's built-in strategies are epoch-based: one LR-scheduler step per micro-batch,
//! summed gradient accumulation, per-tensor clipping, checkpoints per epoch. Pre-training needs
//! steps: this strategy runs optimizer steps of `accumulation` micro-batches with the mean
//! gradient, clips by the global norm, stops on a non-finite loss before it reaches the
//! weights, and checkpoints every N steps with the data position. It drives the same Learner
//! (model, grouped AdamW, schedule), event processor (metrics, TUI dashboard) and
//! `LearningCheckpointer` as Burn's own strategies. An "epoch" on the dashboard is the stretch
//! of `eval_every` steps between validations.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::optim::GradientsAccumulator;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::AsyncCheckpointer;
use burn::train::metric::store::EventStoreClient;
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent,
    LearningCheckpointer, LearningComponentsMarker, LearningResult, SupervisedLearningStrategy,
    SupervisedTrainingEventProcessor, TrainLoader, TrainOutput, TrainStep, TrainingComponents,
    TrainingItem, ValidLoader,
};

use super::checkpoint::{
    self, AtomicCheckpointer, SaveEveryCall, SaveTracker, TrainState, STATE_FORMAT,
};
use super::clip::clip_global_norm;
use super::config::TrainingConfig;
use super::log::{MetricRecord, MetricsLog};
use super::metrics::StepStats;
use super::optimizer::GroupedAdamW;
use super::plot::{plot_runs, PlotRun};
use super::schedule::LrSchedule;
use super::step::{LmBatch, LmOutput};
use crate::data::WindowSampler;
use crate::generation::{generate, GenerateConfig, SamplingConfig};
use crate::model::Gpt;
use crate::tokenizer::Tokenizer;

/// burn-train's learning components of an Arcane run.
pub type ArcaneComponents<B> =
    LearningComponentsMarker<B, LrSchedule, Gpt<B>, GroupedAdamW<Gpt<B>, B>>;

/// An extra evaluation offered at every validation with the step number (HellaSwag): returns
/// `Some((n, acc, acc_norm))` when it ran.
pub type EvalHook<B> =
    Arc<dyn Fn(&Gpt<B>, usize) -> crate::Result<Option<(usize, f64, f64)>> + Send + Sync>;

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// `max_steps` reached.
    Finished,
    /// The user stopped it (the dashboard's quit key); a checkpoint was written.
    Interrupted,
    /// The loss or gradient norm was NaN or infinite at this step; the update was not applied.
    NonFinite {
        /// The step whose loss was not finite.
        step: usize,
        /// The loss.
        loss: f64,
        /// The gradient norm.
        grad_norm: f64,
    },
    /// Something failed (I/O, a checkpoint write).
    Failed(String),
}

/// What the loop reports back to its caller.
#[derive(Clone, Debug)]
pub struct LoopOutcome {
    /// Optimizer steps completed.
    pub step: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Last text sample.
    pub sample: Option<String>,
    /// Mean throughput over the steps of this process.
    pub tokens_per_s: f64,
    /// Mean MFU over the steps of this process, when known.
    pub mfu: Option<f64>,
    /// Step of the last complete checkpoint.
    pub checkpoint: Option<usize>,
}

/// The strategy and everything it needs besides the Learner.
pub struct ArcaneLoop<B: AutodiffBackend> {
    /// Resolved configuration.
    pub config: TrainingConfig,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The training devices; the first holds the model and the optimizer, the others compute
    /// gradients on copies of it (data parallelism).
    pub devices: Vec<B::Device>,
    /// Training windows (for the data position in checkpoints).
    pub sampler: Arc<WindowSampler>,
    /// The checkpoint this run resumes from.
    pub resume: Option<TrainState>,
    /// Print plain log lines (no dashboard).
    pub plain: bool,
    /// Peak FLOP/s of the device, for MFU.
    pub peak_flops: Option<f64>,
    /// Extra evaluation at each validation.
    pub eval_hook: Option<EvalHook<B::InnerBackend>>,
    /// Where the outcome is reported.
    pub outcome: Arc<Mutex<Option<LoopOutcome>>>,
}

type Processor<B> = SupervisedTrainingEventProcessor<ArcaneComponents<B>>;

impl<B: AutodiffBackend> SupervisedLearningStrategy<ArcaneComponents<B>> for ArcaneLoop<B> {
    fn train(
        &self,
        learner: Learner<ArcaneComponents<B>>,
        dataloader_train: TrainLoader<ArcaneComponents<B>>,
        dataloader_valid: ValidLoader<ArcaneComponents<B>>,
        mut components: TrainingComponents<ArcaneComponents<B>>,
    ) -> LearningResult<Gpt<B::InnerBackend>> {
        components
            .event_processor
            .process_train(LearnerEvent::Start);
        let (model, mut processor) =
            self.fit(components, learner, dataloader_train, dataloader_valid, 0);
        processor.process_train(LearnerEvent::End(None));
        LearningResult {
            model: model.valid(),
            renderer: processor.renderer(),
        }
    }

    fn fit(
        &self,
        components: TrainingComponents<ArcaneComponents<B>>,
        mut learner: Learner<ArcaneComponents<B>>,
        dataloader_train: TrainLoader<ArcaneComponents<B>>,
        dataloader_valid: ValidLoader<ArcaneComponents<B>>,
        _starting_epoch: usize,
    ) -> (Gpt<B>, Processor<B>) {
        let TrainingComponents {
            event_processor: mut processor,
            interrupter,
            event_store,
            ..
        } = components;
        let outcome = self.run(
            &mut learner,
            &mut processor,
            &interrupter,
            &event_store,
            dataloader_train,
            dataloader_valid,
        );
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        (learner.model(), processor)
    }
}

/// Running sums for the outcome.
#[derive(Default)]
struct Totals {
    tokens: f64,
    seconds: f64,
    mfu_sum: f64,
    steps: usize,
}

impl<B: AutodiffBackend> ArcaneLoop<B> {
    fn run(
        &self,
        learner: &mut Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        interrupter: &Interrupter,
        store: &EventStoreClient,
        dataloader_train: TrainLoader<ArcaneComponents<B>>,
        dataloader_valid: ValidLoader<ArcaneComponents<B>>,
    ) -> LoopOutcome {
        let c = &self.config;
        let n_devices = self.devices.len();
        let main = self.devices[0].clone();
        let accum = c.accumulation(n_devices).expect("validated before launch");
        let mut step = self.resume.as_ref().map_or(0, |s| s.step);
        let mut tokens = self.resume.as_ref().map_or(0, |s| s.tokens);
        let mut elapsed = self.resume.as_ref().map_or(0.0, |s| s.elapsed_s);
        let mut out = LoopOutcome {
            step,
            stop: StopReason::Finished,
            val_loss: None,
            train_loss: None,
            sample: None,
            tokens_per_s: 0.0,
            mfu: None,
            checkpoint: self.resume.as_ref().map(|s| s.step),
        };
        let log = match MetricsLog::open(&self.run_dir, self.resume.as_ref().map(|s| s.step)) {
            Ok(log) => log,
            Err(e) => {
                return LoopOutcome {
                    stop: StopReason::Failed(e.to_string()),
                    ..out
                }
            }
        };
        let tracker = Arc::new(SaveTracker::default());
        let dir = checkpoint::checkpoint_dir(&self.run_dir);
        let mut checkpointer = LearningCheckpointer::new(
            AsyncCheckpointer::new(AtomicCheckpointer::new(&dir, "model", tracker.clone()))
                .with_interrupter(interrupter.clone()),
            AsyncCheckpointer::new(AtomicCheckpointer::new(&dir, "optim", tracker.clone()))
                .with_interrupter(interrupter.clone()),
            AsyncCheckpointer::new(AtomicCheckpointer::new(&dir, "scheduler", tracker.clone()))
                .with_interrupter(interrupter.clone()),
            Box::new(SaveEveryCall),
        );
        let num_epochs = c.max_steps.div_ceil(c.eval_every);
        let flops_per_token = c.model.flops_per_token(c.seq_len());
        let mut totals = Totals::default();
        let mut last_saved = out.checkpoint;

        while step < c.max_steps {
            if interrupter.should_stop() {
                out.stop = StopReason::Interrupted;
                break;
            }
            let started = Instant::now();
            // Dropout's RNG is a function of (seed, step), so a resumed run draws what the
            // uninterrupted one would have.
            for device in &self.devices {
                B::seed(device, c.seed.wrapping_add(step as u64));
            }
            learner.lr_step();
            let lr = learner.lr_current();
            let per_step = accum * n_devices;
            let block = dataloader_train.slice(step * per_step, (step + 1) * per_step);
            let mut accumulator = GradientsAccumulator::<Gpt<B>>::new();
            let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
            let batches: Vec<_> = block.iter().collect();
            for round in batches.chunks(n_devices) {
                for output in self.train_round(learner, round.to_vec()) {
                    let model = learner.model();
                    let grads = if n_devices > 1 {
                        output.grads.to_device(&main, &model)
                    } else {
                        output.grads
                    };
                    let loss = output.item.loss.inner().to_device(&main.clone().into());
                    loss_sum = Some(match loss_sum {
                        Some(sum) => sum + loss,
                        None => loss,
                    });
                    accumulator.accumulate(&model, grads);
                }
            }
            let mut grads = accumulator.grads();
            let grad_norm = clip_global_norm(&learner.model(), &mut grads, c.optimizer.grad_clip);
            let loss =
                loss_sum.map_or(f64::NAN, |s| s.into_scalar().elem::<f64>()) / per_step as f64;
            if !loss.is_finite() || !grad_norm.is_finite() {
                out.stop = StopReason::NonFinite {
                    step: step + 1,
                    loss,
                    grad_norm,
                };
                break;
            }
            learner.optimizer_step(grads);
            step += 1;
            tokens += c.tokens_per_step as u64;
            let seconds = started.elapsed().as_secs_f64();
            elapsed += seconds;
            let tokens_per_s = c.tokens_per_step as f64 / seconds;
            let mfu = self
                .peak_flops
                .map(|peak| flops_per_token * tokens_per_s / peak);
            totals.tokens += c.tokens_per_step as f64;
            totals.seconds += seconds;
            totals.mfu_sum += mfu.unwrap_or(0.0);
            totals.steps += 1;
            out.step = step;
            out.train_loss = Some(loss);

            let stats = StepStats {
                loss,
                tokens: c.tokens_per_step,
                grad_norm: Some(grad_norm),
                tokens_per_s: Some(tokens_per_s),
                mfu,
                hellaswag: None,
            };
            let epoch = (step - 1) / c.eval_every + 1;
            let in_epoch = (step - 1) % c.eval_every + 1;
            let epoch_len = c.eval_every.min(c.max_steps - (epoch - 1) * c.eval_every);
            let item = LmOutput {
                loss: Tensor::<B, 1>::from_floats([loss as f32], &main),
                stats,
            };
            processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
                item,
                Progress::new(in_epoch, epoch_len),
                Progress::new(epoch, num_epochs),
                Some(step),
                Some(lr),
            )));
            let record = MetricRecord::Train {
                step,
                tokens,
                loss,
                lr,
                grad_norm,
                tokens_per_s,
                mfu,
                elapsed_s: elapsed,
            };
            if let Err(e) = log.append(&record) {
                out.stop = StopReason::Failed(e.to_string());
                break;
            }
            if self.plain && (step % c.log_every == 0 || step == 1) {
                let mfu = mfu.map_or("-".to_string(), |m| format!("{:.1}%", 100.0 * m));
                println!(
                    "step {step:>6}/{} | loss {loss:.4} | lr {lr:.2e} | norm {grad_norm:.3} | {tokens_per_s:>8.0} tok/s | MFU {mfu} | {elapsed:.0}s",
                    c.max_steps
                );
            }

            if step % c.eval_every == 0 || step == c.max_steps {
                if let Err(e) = self.evaluate(
                    learner,
                    processor,
                    &dataloader_valid,
                    &log,
                    step,
                    tokens,
                    epoch,
                    num_epochs,
                    &mut out,
                ) {
                    out.stop = StopReason::Failed(e.to_string());
                    break;
                }
            }
            if step % c.checkpoint_every == 0 || step == c.max_steps {
                if let Err(e) = self.checkpoint(
                    learner,
                    &mut checkpointer,
                    &tracker,
                    store,
                    step,
                    tokens,
                    elapsed,
                ) {
                    out.stop = StopReason::Failed(e.to_string());
                    break;
                }
                last_saved = Some(step);
            }
        }
        // A stop asked for by the user keeps its progress.
        if out.stop == StopReason::Interrupted && last_saved != Some(step) && step > 0 {
            match self.checkpoint(
                learner,
                &mut checkpointer,
                &tracker,
                store,
                step,
                tokens,
                elapsed,
            ) {
                Ok(()) => last_saved = Some(step),
                Err(e) => out.stop = StopReason::Failed(e.to_string()),
            }
        }
        out.checkpoint = last_saved;
        if totals.steps > 0 {
            out.tokens_per_s = totals.tokens / totals.seconds;
            out.mfu = self
                .peak_flops
                .map(|_| totals.mfu_sum / totals.steps as f64);
        }
        out
    }

    /// Forward and backward passes of one micro-batch per device, in parallel: device `i` gets
    /// `batches[i]` and a copy of the model. Returns the outputs in device order.
    fn train_round(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        batches: Vec<LmBatch<B>>,
    ) -> Vec<TrainOutput<LmOutput<B>>> {
        if batches.len() == 1 {
            return batches.into_iter().map(|b| learner.train_step(b)).collect();
        }
        let model = learner.model();
        std::thread::scope(|scope| {
            let workers: Vec<_> = batches
                .into_iter()
                .zip(&self.devices)
                .map(|(batch, device)| {
                    let model = model.clone();
                    scope.spawn(move || {
                        let model = model.fork(device);
                        let batch = LmBatch {
                            inputs: batch.inputs.to_device(device),
                            targets: batch.targets.to_device(device),
                            loss_scale: batch.loss_scale,
                        };
                        TrainStep::step(&model, batch)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a data-parallel worker panicked"))
                .collect()
        })
    }

    /// Validation loss, a text sample, the optional extra evaluation, and the loss picture.
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        dataloader_valid: &ValidLoader<ArcaneComponents<B>>,
        log: &MetricsLog,
        step: usize,
        tokens: u64,
        epoch: usize,
        num_epochs: usize,
        out: &mut LoopOutcome,
    ) -> crate::Result<()> {
        let model = learner.model().valid();
        let (mut sum, mut count) = (0.0, 0usize);
        let mut batches = dataloader_valid.iter();
        let mut index = 0;
        while let Some(batch) = batches.next() {
            index += 1;
            let output = InferenceStep::step(&model, batch);
            let n = output.stats.tokens;
            let loss = output.loss.clone().into_scalar().elem::<f64>();
            sum += loss * n as f64;
            count += n;
            processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                output,
                batches.progress(),
                Progress::new(epoch, num_epochs),
                Some(index),
                None,
            )));
        }
        let val_loss = sum / count.max(1) as f64;
        out.val_loss = Some(val_loss);
        log.append(&MetricRecord::Val {
            step,
            tokens,
            loss: val_loss,
        })?;

        let c = &self.config;
        let tokenizer = Tokenizer::gpt2();
        let prompt = tokenizer.encode(&c.sample_prompt);
        if !prompt.is_empty() && c.sample_tokens > 0 && model.check_tokens(&prompt).is_ok() {
            let config = GenerateConfig {
                max_new_tokens: c
                    .sample_tokens
                    .min(c.model.max_seq_len.saturating_sub(prompt.len()))
                    .max(1),
                sampling: SamplingConfig {
                    temperature: 1.0,
                    top_k: Some(50),
                    top_p: None,
                    seed: c.seed.wrapping_add(step as u64),
                },
                vocab_limit: Some(c.model.vocab_size.min(Tokenizer::VOCAB_SIZE)),
                ..GenerateConfig::default()
            };
            if prompt.len() < c.model.max_seq_len {
                let generated = generate(&model, &prompt, &config, |_| {})?;
                let text = format!("{}{}", c.sample_prompt, tokenizer.decode(&generated.ids)?);
                log.append(&MetricRecord::Sample {
                    step,
                    text: text.clone(),
                })?;
                out.sample = Some(text);
            }
        }
        let mut hellaswag = None;
        let extra = self
            .eval_hook
            .as_ref()
            .map(|hook| hook(&model, step))
            .transpose()?
            .flatten();
        if let Some((n, acc, acc_norm)) = extra {
            log.append(&MetricRecord::Hellaswag {
                step,
                tokens,
                n,
                acc,
                acc_norm,
            })?;
            hellaswag = Some((n, acc_norm));
            let stats = StepStats {
                hellaswag: Some(acc_norm),
                ..StepStats::default()
            };
            let item = LmOutput {
                loss: Tensor::from_floats([0.0], &model.device()),
                stats,
            };
            processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                item,
                Progress::new(1, 1),
                Progress::new(epoch, num_epochs),
                None,
                None,
            )));
        }
        if self.plain {
            println!("step {step:>6}/{} | val loss {val_loss:.4}", c.max_steps);
            if let Some((n, acc_norm)) = hellaswag {
                println!(
                    "step {step:>6}/{} | HellaSwag acc_norm {acc_norm:.4} on {n} examples",
                    c.max_steps
                );
            }
            if let Some(sample) = &out.sample {
                println!(
                    "step {step:>6}/{} | sample: {}",
                    c.max_steps,
                    sample.replace('\n', " ")
                );
            }
        }
        processor.process_train(LearnerEvent::EndEpoch(epoch));
        processor.process_valid(LearnerEvent::EndEpoch(epoch));
        let records = super::log::read_metrics(log.path())?;
        plot_runs(
            &[PlotRun {
                name: "run".into(),
                records: &records,
            }],
            &self.run_dir.join("loss"),
        )
    }

    /// Model, optimizer and schedule through burn-train's checkpointer, then the state file
    /// that completes the checkpoint, then the Arcane model files of the run folder.
    #[allow(clippy::too_many_arguments)]
    fn checkpoint(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        checkpointer: &mut LearningCheckpointer<ArcaneComponents<B>>,
        tracker: &SaveTracker,
        store: &EventStoreClient,
        step: usize,
        tokens: u64,
        elapsed_s: f64,
    ) -> crate::Result<()> {
        let c = &self.config;
        checkpointer.checkpoint(learner, step, store);
        tracker.wait(&["model", "optim", "scheduler"], step)?;
        let micro_batches_per_step =
            (c.accumulation(self.devices.len())? * self.devices.len()) as u64;
        let state = TrainState {
            format: STATE_FORMAT.into(),
            version: 1,
            step,
            tokens,
            data: self
                .sampler
                .position(step as u64 * micro_batches_per_step, c.micro_batch),
            seed: c.seed,
            model_fingerprint: checkpoint::fingerprint(c),
            elapsed_s,
        };
        checkpoint::write_state(&self.run_dir, &state)?;
        checkpoint::prune(&self.run_dir, c.keep_checkpoints)?;
        let model = learner.model().valid();
        match &c.finetune {
            // A fine-tune run keeps only its adapters: a small file beside the checkpoints.
            Some(f) => {
                crate::lora::save_adapter(&model, &self.run_dir, &f.base.display().to_string())
            }
            None => crate::checkpoint::save_model(&model, &self.run_dir),
        }
    }
}
