//! The training loop, as a burn-train `SupervisedLearningStrategy`.
//!
//! burn-train's built-in strategies are epoch-based: one LR-scheduler step per micro-batch,
//! summed gradient accumulation, per-tensor clipping, checkpoints per epoch. Pre-training needs
//! steps: this strategy runs optimizer steps of `accumulation` micro-batches with the mean
//! gradient, clips by the global norm, reads the step figures back in batches (`readback.rs`:
//! the GPU's queue is never drained once per step), stops at the first non-finite loss before
//! anything after it is evaluated or checkpointed, and checkpoints every N steps with the data
//! position. It drives the same Learner
//! (model, grouped AdamW, schedule), event processor (metrics, TUI dashboard) and
//! `LearningCheckpointer` as Burn's own strategies. An "epoch" on the dashboard is the stretch
//! of `eval_every` steps between validations.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::store::EventStoreClient;
use burn::train::{
    EventProcessorTraining, Interrupter, Learner, LearnerEvent, LearningResult,
    SupervisedLearningStrategy, TrainLoader, TrainingComponents, ValidLoader,
};

use super::checkpoint::{self, TrainState, STATE_FILE};
use super::checkpointer::RunCheckpointer;
use super::components::{ArcaneComponents, ArcaneLoop, Processor};
use super::evaluate::EvalPoint;
use super::log::MetricsLog;
use super::outcome::{LoopOutcome, StopReason, Totals};
use super::readback::Pending;
use super::report::StepReport;
use crate::model::Gpt;

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
        let loaders = Loaders {
            train: dataloader_train,
            valid: dataloader_valid,
        };
        let outcome = self.run(
            &mut learner,
            &mut processor,
            &interrupter,
            &event_store,
            &loaders,
        );
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        (learner.model(), processor)
    }
}

/// The training and validation batches of a run.
struct Loaders<B: AutodiffBackend> {
    train: TrainLoader<ArcaneComponents<B>>,
    valid: ValidLoader<ArcaneComponents<B>>,
}

/// Where the run stands: steps, tokens and seconds so far (resumed runs continue the counts).
#[derive(Clone, Copy, Debug)]
struct Position {
    step: usize,
    tokens: u64,
    elapsed_s: f64,
}

/// Everything the loop updates as it goes.
struct RunState<B: AutodiffBackend> {
    /// Steps read back and reported (the steps queued after them are in `pending`).
    at: Position,
    out: LoopOutcome,
    totals: Totals,
    pending: Pending<B::InnerBackend>,
    log: MetricsLog,
    checkpointer: RunCheckpointer<B>,
}

impl<B: AutodiffBackend> ArcaneLoop<B> {
    /// Steps until `max_steps`, an interruption or a failure; evaluates and checkpoints on the
    /// way, and always leaves the progress of an interrupted run in a checkpoint.
    fn run(
        &self,
        learner: &mut Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        interrupter: &Interrupter,
        store: &EventStoreClient,
        loaders: &Loaders<B>,
    ) -> LoopOutcome {
        let c = &self.config;
        let resumed = self.resume.as_ref();
        let at = Position {
            step: resumed.map_or(0, |s| s.step),
            tokens: resumed.map_or(0, |s| s.tokens),
            elapsed_s: resumed.map_or(0.0, |s| s.elapsed_s),
        };
        let mut out = LoopOutcome::starting(at.step, resumed.map(|s| s.step));
        let log = match MetricsLog::open(&self.run_dir, resumed.map(|s| s.step)) {
            Ok(log) => log,
            Err(e) => {
                out.stop = StopReason::Failed(e.to_string());
                return out;
            }
        };
        let checkpointer = RunCheckpointer::new(&self.run_dir, interrupter, c.finetune.is_some());
        let mut state = RunState {
            at,
            out,
            totals: Totals::default(),
            pending: Pending::new(),
            log,
            checkpointer,
        };
        if let Some(on_start) = &self.on_start {
            on_start();
        }
        let mut queued = at.step;
        while queued < c.max_steps {
            if interrupter.should_stop() {
                state.out.stop = StopReason::Interrupted;
                break;
            }
            state
                .pending
                .push(self.optimizer_step(learner, &loaders.train, queued));
            queued += 1;
            if !self.read_back_due(queued, state.pending.len()) {
                continue;
            }
            if let Err(stop) = self.read_back(processor, &mut state) {
                state.out.stop = stop;
                break;
            }
            if let Err(e) = self.after_step(learner, processor, store, loaders, &mut state) {
                state.out.stop = StopReason::Failed(e.to_string());
                break;
            }
            // Evaluation and checkpoint time is not training time.
            state.pending.restart_clock();
        }
        self.finish(learner, processor, store, state)
    }

    /// Whether the queued steps must be read back after step `step`: every `log_every` steps,
    /// and before every validation, checkpoint, extra evaluation and the end. A custom extra
    /// evaluation, whose steps are unknown here, is offered every step.
    fn read_back_due(&self, step: usize, pending: usize) -> bool {
        let c = &self.config;
        let extra = match (&self.eval_hook, &c.hellaswag) {
            (None, _) => false,
            (Some(_), Some(h)) => step % h.every == 0,
            (Some(_), None) => true,
        } || c.eval_suite.as_ref().is_some_and(|e| step % e.every == 0);
        pending >= c.log_every
            || step % c.eval_every == 0
            || step % c.checkpoint_every == 0
            || step == c.max_steps
            || extra
    }

    /// Reads the pending steps back and reports each; a non-finite step stops the run there.
    fn read_back(
        &self,
        processor: &mut Processor<B>,
        state: &mut RunState<B>,
    ) -> Result<(), StopReason> {
        let c = &self.config;
        let flops_per_token = c.model.flops_per_token(c.seq_len());
        let (figures, bad) = state.pending.read();
        for (figures, seconds) in figures {
            let at = &mut state.at;
            at.step += 1;
            // Supervised fine-tuning counts the tokens that are not padding (TRL's
            // `num_tokens`); pre-training windows have none.
            let step_tokens = figures.sft.map_or(c.tokens_per_step, |s| s.real_tokens);
            at.tokens += step_tokens as u64;
            at.elapsed_s += seconds;
            let mfu = self
                .peak_flops
                .map(|peak| flops_per_token * step_tokens as f64 / seconds / peak);
            state.totals.add(step_tokens, seconds, mfu);
            state.out.step = at.step;
            state.out.train_loss = Some(figures.loss);
            let report = StepReport {
                step: at.step,
                tokens: at.tokens,
                elapsed_s: at.elapsed_s,
                seconds,
                figures,
                mfu,
            };
            self.report_step(processor, &state.log, &report)
                .map_err(|e| StopReason::Failed(e.to_string()))?;
        }
        match bad {
            Some(bad) => Err(StopReason::NonFinite {
                step: bad.step,
                loss: bad.loss,
                grad_norm: bad.grad_norm,
            }),
            None => Ok(()),
        }
    }

    /// After a read-back at step `state.at.step`: validation, checkpoint and the extra
    /// evaluation when it is time for them.
    fn after_step(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        store: &EventStoreClient,
        loaders: &Loaders<B>,
        state: &mut RunState<B>,
    ) -> crate::Result<()> {
        let c = &self.config;
        let at = state.at;
        let last = at.step == c.max_steps;
        let (epoch, num_epochs) = self.epoch_of(at.step);
        let point = EvalPoint {
            step: at.step,
            tokens: at.tokens,
            epoch,
            num_epochs,
        };
        // Validation, checkpoints and the extra evaluation each keep their own interval.
        if at.step % c.eval_every == 0 || last {
            let figures = self.evaluate(learner, processor, &loaders.valid, &state.log, point)?;
            state.out.val_loss = Some(figures.val_loss);
            if figures.sample.is_some() {
                state.out.sample = figures.sample;
            }
        } else if self.eval_hook.is_some() || self.suite_hook.is_some() {
            self.evaluate_extra(learner, processor, &state.log, point)?;
        }
        if at.step % c.checkpoint_every == 0 || last {
            self.save(learner, &mut state.checkpointer, store, at)?;
            state.out.checkpoint = Some(at.step);
        }
        Ok(())
    }

    /// The end of the loop: an interrupted run reads back its last steps and keeps them in a
    /// checkpoint (unless one of them was not finite); then the throughput totals.
    fn finish(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        store: &EventStoreClient,
        mut state: RunState<B>,
    ) -> LoopOutcome {
        if state.out.stop == StopReason::Interrupted {
            if let Err(stop) = self.read_back(processor, &mut state) {
                state.out.stop = stop;
            }
        }
        let at = state.at;
        if state.out.stop == StopReason::Interrupted
            && state.out.checkpoint != Some(at.step)
            && at.step > 0
        {
            match self.save(learner, &mut state.checkpointer, store, at) {
                Ok(()) => state.out.checkpoint = Some(at.step),
                Err(e) => state.out.stop = StopReason::Failed(e.to_string()),
            }
        }
        state
            .totals
            .finish(&mut state.out, self.peak_flops.is_some());
        state.out
    }

    /// The model files of the run folder, then checkpoint `at.step` (model, optimizer,
    /// schedule, state file).
    fn save(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        checkpointer: &mut RunCheckpointer<B>,
        store: &EventStoreClient,
        at: Position,
    ) -> crate::Result<()> {
        let c = &self.config;
        let state = TrainState {
            format: STATE_FILE.format.into(),
            version: STATE_FILE.version,
            step: at.step,
            tokens: at.tokens,
            data: self.sampler.position(
                (at.step * self.micro_batches_per_step()) as u64,
                c.micro_batch,
            ),
            seed: c.seed,
            model_fingerprint: checkpoint::fingerprint(c),
            elapsed_s: at.elapsed_s,
            config: Some(c.clone()),
            data_tokens: Some(self.data_tokens),
        };
        // The model files first: once the checkpoint is complete they already hold its weights,
        // so a kill anywhere after (even after the final step) never leaves them a checkpoint
        // behind; a kill before leaves them ahead of a checkpoint the resume trains again.
        self.write_model_files(learner)?;
        checkpointer.save(learner, store, &state, c.keep_checkpoints)
    }

    /// The model files of the run folder from the learner's model: the Arcane model, or the
    /// adapters alone for a fine-tune run.
    fn write_model_files(&self, learner: &Learner<ArcaneComponents<B>>) -> crate::Result<()> {
        let model = learner.model().valid();
        let c = &self.config;
        match &self.config.finetune {
            // A fine-tune run keeps only its adapters: a small file beside the checkpoints.
            Some(f) => crate::lora::save_adapter(&model, &self.run_dir, &f.base_label()),
            // A full fine-tune keeps its base's tokenizer (with ChatML's tokens when it added
            // them), so the run folder is a model of its own.
            None if c.init.is_some() => crate::checkpoint::save_model_with_tokenizer(
                &model,
                &self.run_dir,
                Some(&self.tokenizer),
            ),
            None => crate::checkpoint::save_model(&model, &self.run_dir),
        }
    }
}
