//! What burn-train calls per batch: the loss, and the train (forward + backward) and validation
//! steps of [`Gpt`]. Kept out of `model/`, which is pure architecture.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::ItemLazy;
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use super::metrics::StepStats;
use crate::data::Batch;
use crate::model::Gpt;

/// A batch of `B` sequences: inputs and the next tokens.
#[derive(Clone, Debug)]
pub struct LmBatch<B: Backend> {
    /// `[B, T]`
    pub inputs: Tensor<B, 2, Int>,
    /// `[B, T]`, the inputs shifted by one.
    pub targets: Tensor<B, 2, Int>,
    /// Multiplies the loss before the backward pass: `1 / accumulation`, because Burn's
    /// accumulation sums gradients and the optimizer must see their mean.
    pub loss_scale: f64,
}

impl<B: Backend> LmBatch<B> {
    /// Splits windows of `T + 1` tokens into inputs and targets on `device`.
    pub fn new(batch: &Batch, loss_scale: f64, device: &B::Device) -> Self {
        let (b, t) = (batch.batch_size, batch.seq_len);
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for window in batch.tokens.chunks_exact(t + 1) {
            inputs.extend(window[..t].iter().map(|&x| x as i64));
            targets.extend(window[1..].iter().map(|&x| x as i64));
        }
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [b, t]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, t]), device),
            loss_scale,
        }
    }

    /// Tokens predicted in this batch (`B · T`).
    pub fn num_tokens(&self) -> usize {
        self.targets.dims().iter().product()
    }
}

/// Mean next-token cross-entropy of `targets` under the model: the blocks, then the head
/// fused with the loss ([`Gpt::head_loss`]), so the `[B·T, V]` logits are never all held;
/// in f32 whatever the model's compute precision (the softmax over 50k logits needs f32's
/// mantissa).
///
/// # Shapes
/// - inputs, targets: `[B, T]`
/// - output: `[1]`
pub fn lm_loss<B: Backend>(
    model: &Gpt<B>,
    inputs: Tensor<B, 2, Int>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let hidden = model.forward_hidden(inputs, None); // [B, T, C]
    model.head_loss(hidden, targets)
}

/// The output of a step: the (unscaled, detached) mean loss, plus figures the training loop
/// fills in once per optimizer step.
#[derive(Clone, Debug)]
pub struct LmOutput<B: Backend> {
    /// Mean loss `[1]`.
    pub loss: Tensor<B, 1>,
    /// Everything else, already on the host.
    pub stats: StepStats,
}

impl<B: Backend> ItemLazy for LmOutput<B> {
    type ItemSync = StepStats;

    fn sync(self) -> StepStats {
        StepStats {
            loss: self.loss.into_scalar().elem::<f64>(),
            ..self.stats
        }
    }
}

impl<B: AutodiffBackend> TrainStep for Gpt<B> {
    type Input = LmBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: LmBatch<B>) -> TrainOutput<LmOutput<B>> {
        let tokens = batch.num_tokens();
        let loss = lm_loss(self, batch.inputs, batch.targets);
        let grads = (loss.clone() * batch.loss_scale).backward();
        let stats = StepStats {
            tokens,
            ..StepStats::default()
        };
        TrainOutput::new(
            self,
            grads,
            LmOutput {
                loss: loss.detach(),
                stats,
            },
        )
    }
}

impl<B: Backend> InferenceStep for Gpt<B> {
    type Input = LmBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: LmBatch<B>) -> LmOutput<B> {
        let tokens = batch.num_tokens();
        let loss = lm_loss(self, batch.inputs, batch.targets);
        LmOutput {
            loss,
            stats: StepStats {
                tokens,
                ..StepStats::default()
            },
        }
    }
}
