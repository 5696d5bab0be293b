//! What a finished optimizer step reports: a dashboard item, a line of `metrics.jsonl`, and a
//! plain log line every `log_every` steps when there is no dashboard.

use burn::data::dataloader::Progress;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{EventProcessorTraining, LearnerEvent, TrainingItem};

use super::components::{ArcaneLoop, Processor};
use super::log::{MetricRecord, MetricsLog};
use super::metrics::StepStats;
use super::readback::StepFigures;
use super::step::LmOutput;

/// A step as reported: its figures and where the run stands after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepReport {
    /// Steps completed (1-based).
    pub step: usize,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Seconds of training so far (resumed runs continue the count).
    pub elapsed_s: f64,
    /// Seconds this step took.
    pub seconds: f64,
    /// Loss, gradient norm, learning rate.
    pub figures: StepFigures,
    /// Model FLOPs utilisation, when the peak is known.
    pub mfu: Option<f64>,
}

impl StepReport {
    /// Throughput of the step.
    pub fn tokens_per_s(&self, tokens_per_step: usize) -> f64 {
        tokens_per_step as f64 / self.seconds
    }
}

impl<B: AutodiffBackend> ArcaneLoop<B> {
    /// Sends the step to the dashboard, appends it to `metrics.jsonl` and prints the plain line.
    pub(crate) fn report_step(
        &self,
        processor: &mut Processor<B>,
        log: &MetricsLog,
        r: &StepReport,
    ) -> crate::Result<()> {
        let c = &self.config;
        let f = r.figures;
        // Supervised fine-tuning steps vary: their tokens without padding.
        let step_tokens = f.sft.map_or(c.tokens_per_step, |s| s.real_tokens);
        let tokens_per_s = r.tokens_per_s(step_tokens);
        let stats = StepStats {
            loss: f.loss,
            tokens: step_tokens,
            grad_norm: Some(f.grad_norm),
            tokens_per_s: Some(tokens_per_s),
            mfu: r.mfu,
            hellaswag: None,
        };
        let (epoch, num_epochs) = self.epoch_of(r.step);
        let in_epoch = (r.step - 1) % c.eval_every + 1;
        let epoch_len = c.eval_every.min(c.max_steps - (epoch - 1) * c.eval_every);
        let item = LmOutput {
            loss: Tensor::<B, 1>::from_floats([f.loss as f32], &self.devices[0]),
            stats,
            token_metrics: None,
        };
        processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
            item,
            Progress::new(in_epoch, epoch_len),
            Progress::new(epoch, num_epochs),
            Some(r.step),
            Some(f.lr),
        )));
        log.append(&MetricRecord::Train {
            step: r.step,
            tokens: r.tokens,
            loss: f.loss,
            lr: f.lr,
            grad_norm: f.grad_norm,
            tokens_per_s,
            mfu: r.mfu,
            elapsed_s: r.elapsed_s,
        })?;
        if let Some(sft) = f.sft {
            // TRL's names for the same figures (`num_tokens`: tokens seen so far, padding
            // excluded; `grad_norm`: before clipping).
            let values = [
                ("loss", f.loss),
                ("mean_token_accuracy", sft.mean_token_accuracy),
                ("entropy", sft.entropy),
                ("num_tokens", r.tokens as f64),
                ("learning_rate", f.lr),
                ("grad_norm", f.grad_norm),
            ];
            log.append(&MetricRecord::Sft {
                step: r.step,
                values: values.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            })?;
        }
        if self.plain && (r.step % c.log_every == 0 || r.step == 1) {
            let mfu = r
                .mfu
                .map_or("-".to_string(), |m| format!("{:.1}%", 100.0 * m));
            println!(
                "step {:>6}/{} | loss {:.4} | lr {:.2e} | norm {:.3} | {tokens_per_s:>8.0} tok/s | MFU {mfu} | {:.0}s",
                r.step, c.max_steps, f.loss, f.lr, f.grad_norm, r.elapsed_s
            );
        }
        Ok(())
    }

    /// The dashboard's epoch of `step` (a stretch of `eval_every` steps), and their number.
    pub(crate) fn epoch_of(&self, step: usize) -> (usize, usize) {
        let c = &self.config;
        (
            (step.max(1) - 1) / c.eval_every + 1,
            c.max_steps.div_ceil(c.eval_every),
        )
    }
}
