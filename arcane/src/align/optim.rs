//! The update step every alignment loop shares, built from the training module's pieces: the
//! grouped AdamW, the warmup + cosine schedule, global-norm clipping and the non-finite guard
//! of pre-training (a step whose loss or gradient norm is NaN or infinite is not applied and
//! stops the run). Also the metrics log of alignment runs.

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};
use crate::training::{
    clip_global_norm, GroupedAdamW, LrSchedule, MetricRecord, MetricsLog, OptimizerConfig,
    ScheduleConfig, ScheduleKind, TrainingConfig,
};

/// Optimizer and schedule of an alignment run. No weight decay by default (TRL's default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// The rate decays by a cosine to `min_lr_ratio · lr` at the last step; 1 keeps it constant.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay of weight matrices.
    pub weight_decay: f64,
    /// Global gradient norm clip (0: none).
    pub grad_clip: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
}

impl Default for OptimSettings {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            warmup_steps: 0,
            min_lr_ratio: 1.0,
            weight_decay: 0.0,
            grad_clip: 1.0,
            beta1: 0.9,
            beta2: 0.999,
        }
    }
}

/// What one applied update measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The loss.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the step.
    pub lr: f64,
}

/// AdamW + schedule + clipping + guard for a module `M`.
pub struct Updater<M: AutodiffModule<B>, B: AutodiffBackend> {
    optim: GroupedAdamW<M, B>,
    schedule: LrSchedule,
    grad_clip: f64,
    step: usize,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Updater<M, B> {
    /// An updater for `total_steps` steps of modules like `model`.
    pub fn new(settings: &OptimSettings, total_steps: usize, model: &M) -> Self {
        let optimizer = OptimizerConfig {
            max_lr: settings.lr,
            min_lr_ratio: settings.min_lr_ratio,
            beta1: settings.beta1,
            beta2: settings.beta2,
            epsilon: 1e-8,
            weight_decay: settings.weight_decay,
            decay_embeddings: false,
            grad_clip: settings.grad_clip,
        };
        let training = TrainingConfig {
            max_steps: total_steps.max(1),
            optimizer: optimizer.clone(),
            schedule: ScheduleConfig {
                kind: ScheduleKind::Cosine,
                warmup_steps: settings.warmup_steps,
                ..ScheduleConfig::default()
            },
            ..TrainingConfig::tiny_cpu()
        };
        Self {
            optim: GroupedAdamW::new(&optimizer, model),
            schedule: LrSchedule::new(&training, 0),
            grad_clip: settings.grad_clip,
            step: 0,
        }
    }

    /// Updates applied so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Backpropagates `loss`, clips, and applies the update, unless the loss or the gradient
    /// norm is not finite: then nothing is applied and the error says which step failed.
    pub fn step(&mut self, model: M, loss: Tensor<B, 1>) -> Result<(M, StepReport)> {
        let lr = self.schedule.lr(self.step);
        let value = loss.clone().into_scalar().elem::<f64>();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = clip_global_norm(&model, &mut grads, self.grad_clip);
        if !value.is_finite() || !grad_norm.is_finite() {
            return Err(ArcaneError::InvalidInput(format!(
                "step {}: the loss is {value} and the gradient norm {grad_norm}; the update was \
                 not applied and the run stopped. Lower the learning rate or check the data",
                self.step + 1
            )));
        }
        let model = self.optim.step(lr, model, grads);
        self.step += 1;
        Ok((
            model,
            StepReport {
                loss: value,
                grad_norm,
                lr,
            },
        ))
    }
}

/// Where an alignment run reports: `metrics.jsonl` (optional) and a listener (the CLI's
/// progress lines).
pub struct AlignLog<'a> {
    metrics: Option<MetricsLog>,
    listener: Box<dyn FnMut(&MetricRecord) + 'a>,
}

impl<'a> AlignLog<'a> {
    /// Writes to `metrics` (if any) and calls `listener` with every record.
    pub fn new(metrics: Option<MetricsLog>, listener: impl FnMut(&MetricRecord) + 'a) -> Self {
        Self {
            metrics,
            listener: Box::new(listener),
        }
    }

    /// Reports nowhere.
    pub fn silent() -> Self {
        Self::new(None, |_| {})
    }

    /// Records metrics of `algo` at `step`; non-finite values are left out (JSON has none).
    pub fn record(&mut self, algo: &str, step: usize, values: &[(&str, f64)]) -> Result<()> {
        let values: BTreeMap<String, f64> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        self.emit(MetricRecord::Align {
            algo: algo.into(),
            step,
            values,
        })
    }

    /// Records a text sample.
    pub fn sample(&mut self, step: usize, text: String) -> Result<()> {
        self.emit(MetricRecord::Sample { step, text })
    }

    fn emit(&mut self, record: MetricRecord) -> Result<()> {
        (self.listener)(&record);
        match &self.metrics {
            Some(log) => log.append(&record),
            None => Ok(()),
        }
    }
}
