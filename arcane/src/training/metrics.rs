//! Training metrics for burn-train's dashboard: loss, perplexity, gradient norm, tokens/s and
//! MFU, plus the table of GPU peaks that MFU divides by.

use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use serde::{Deserialize, Serialize};

/// Per-step figures on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Mean loss (nats/token).
    pub loss: f64,
    /// Tokens in the step.
    pub tokens: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: Option<f64>,
    /// Throughput of the step.
    pub tokens_per_s: Option<f64>,
    /// Model FLOPs utilisation (0..1).
    pub mfu: Option<f64>,
    /// HellaSwag acc_norm, on the validation item that carries it.
    pub hellaswag: Option<f64>,
}

impl Adaptor<StepStats> for StepStats {
    fn adapt(&self) -> StepStats {
        *self
    }
}

/// Which figure a [`StepMetric`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepMetricKind {
    /// Mean loss.
    Loss,
    /// `exp(loss)`.
    Perplexity,
    /// Global gradient norm.
    GradNorm,
    /// Tokens per second.
    TokensPerSecond,
    /// MFU in percent.
    Mfu,
    /// HellaSwag acc_norm in percent.
    HellaswagAccNorm,
}

/// One numeric figure of [`StepStats`] as a burn-train metric.
#[derive(Clone)]
pub struct StepMetric {
    kind: StepMetricKind,
    name: MetricName,
    state: NumericMetricState,
}

impl StepMetric {
    /// The metric for `kind`. Names become file names in burn-train: no slashes.
    pub fn new(kind: StepMetricKind) -> Self {
        let name = match kind {
            StepMetricKind::Loss => "Loss",
            StepMetricKind::Perplexity => "Perplexity",
            StepMetricKind::GradNorm => "Grad Norm",
            StepMetricKind::TokensPerSecond => "Tokens per Second",
            StepMetricKind::Mfu => "MFU percent",
            StepMetricKind::HellaswagAccNorm => "HellaSwag acc_norm percent",
        };
        Self {
            kind,
            name: Arc::new(name.to_string()),
            state: NumericMetricState::new(),
        }
    }
}

impl Metric for StepMetric {
    type Input = StepStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &StepStats, _metadata: &MetricMetadata) -> SerializedEntry {
        let has_loss = item.tokens > 0;
        let (value, precision) = match self.kind {
            StepMetricKind::Loss => (has_loss.then_some(item.loss), 4),
            StepMetricKind::Perplexity => (has_loss.then(|| item.loss.exp()), 2),
            StepMetricKind::GradNorm => (item.grad_norm, 3),
            StepMetricKind::TokensPerSecond => (item.tokens_per_s, 0),
            StepMetricKind::Mfu => (item.mfu.map(|m| 100.0 * m), 2),
            StepMetricKind::HellaswagAccNorm => (item.hellaswag.map(|a| 100.0 * a), 2),
        };
        let format = FormatOptions::new(self.name()).precision(precision);
        match value {
            Some(v) => self.state.update(v, 1, format),
            // An item without this figure (HellaSwag's item has no loss): a zero-weight update
            // leaves the epoch's aggregate as it is.
            None => {
                let running = match self.state.running_value() {
                    NumericEntry::Aggregated {
                        aggregated_value,
                        count,
                    } if count > 0 => aggregated_value,
                    _ => 0.0,
                };
                self.state.update(running, 0, format)
            }
        }
    }

    fn clear(&mut self) {
        self.state.reset();
    }

    fn attributes(&self) -> MetricAttributes {
        let higher_is_better = matches!(
            self.kind,
            StepMetricKind::TokensPerSecond | StepMetricKind::Mfu
        );
        NumericAttributes {
            unit: None,
            higher_is_better,
        }
        .into()
    }
}

impl Numeric for StepMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// Dense bf16 tensor-core peaks (FLOP/s) of common GPUs, from the vendors' data sheets; MFU is
/// conventionally quoted against these (PaLM, nanoGPT), whatever precision the run uses.
pub const GPU_PEAK_FLOPS: [(&str, f64); 11] = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
];

/// The peak of the first table entry whose name occurs in `device_name` (e.g. nvidia-smi's
/// "NVIDIA H100 80GB HBM3").
pub fn peak_flops_for(device_name: &str) -> Option<f64> {
    GPU_PEAK_FLOPS
        .iter()
        .find(|(name, _)| device_name.contains(name))
        .map(|(_, peak)| *peak)
}
