//! What burn-train calls per batch: the loss, and the train (forward + backward) and validation
//! steps of [`Gpt`]. Kept out of `model/`, which is pure architecture.

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::ItemLazy;
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use super::metrics::StepStats;
use crate::data::Batch;
use crate::kernels::recompute;
use crate::model::{Gpt, Packing};

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
    /// `[N]` the positions (in the flattened `[B·T]`) whose targets carry loss; `None`: every
    /// position (pre-training). Supervised fine-tuning masks prompts, user turns and padding.
    pub loss_rows: Option<Tensor<B, 1, Int>>,
    /// Tokens the batch trains on that are not padding (TRL's `num_tokens` counts these).
    pub real_tokens: usize,
    /// Packed rows (several examples a row, none attending to another); `None`: one sequence
    /// a row, plain causal attention.
    pub packing: Option<Packing<B>>,
    /// Recompute each block's activations in the backward pass instead of keeping them (see
    /// [`crate::kernels::recompute`]); set by the training loop from its config.
    pub activation_checkpointing: bool,
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
            loss_rows: None,
            real_tokens: b * t,
            packing: None,
            activation_checkpointing: false,
        }
    }

    /// Tokens predicted in this batch (`B · T`).
    pub fn num_tokens(&self) -> usize {
        self.targets.dims().iter().product()
    }

    /// The batch on `device`.
    pub fn to_device(self, device: &B::Device) -> Self {
        Self {
            inputs: self.inputs.to_device(device),
            targets: self.targets.to_device(device),
            loss_rows: self.loss_rows.map(|r| r.to_device(device)),
            packing: self.packing.map(|p| p.to_device(device)),
            ..self
        }
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

/// Mean cross-entropy over the positions `rows` of the flattened `[B·T]` only (supervised
/// fine-tuning: TRL's loss over the non-ignored labels). Only the selected hidden states go
/// through the head, fused with the loss as in [`lm_loss`]. Returns the loss and the selected
/// hidden states `[1, N, C]` with their targets `[1, N]`, for the token metrics.
///
/// # Shapes
/// - inputs, targets: `[B, T]`; rows: `[N]`, N >= 1
/// - output: `[1]`
pub fn masked_lm_loss<B: Backend>(
    model: &Gpt<B>,
    inputs: Tensor<B, 2, Int>,
    targets: Tensor<B, 2, Int>,
    rows: Tensor<B, 1, Int>,
    packing: Option<&Packing<B>>,
) -> (Tensor<B, 1>, Tensor<B, 3>, Tensor<B, 2, Int>) {
    let [b, t] = inputs.dims();
    let hidden = match packing {
        Some(packing) => model.forward_packed(inputs, packing),
        None => model.forward_hidden(inputs, None),
    }; // [B, T, C]
    let c = hidden.dims()[2];
    let n = rows.dims()[0];
    let picked = hidden.reshape([b * t, c]).select(0, rows.clone()); // [N, C]
    let picked = picked.reshape([1, n, c]);
    let targets = targets.reshape([b * t]).select(0, rows).reshape([1, n]);
    let loss = model.head_loss(picked.clone(), targets.clone());
    (loss, picked, targets)
}

/// TRL's token metrics of supervised fine-tuning over the loss positions, summed (the loop
/// divides by the loss tokens of the step): `[correct, entropy]`, where a token is correct when
/// it is the argmax of the logits, and the entropy is `-Σ_v p log p` of the next-token
/// distribution (`mean_token_accuracy` and `entropy` in TRL's logs).
///
/// # Shapes
/// - hidden: `[1, N, C]` (detached); targets: `[1, N]`
/// - output: `[2]`
pub fn token_metrics<B: Backend>(
    model: &Gpt<B>,
    hidden: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let logits = model.head(hidden).cast(burn::tensor::FloatDType::F32); // [1, N, V]
    let predicted = logits.clone().argmax(2).squeeze_dim::<2>(2); // [1, N]
    let correct = predicted.equal(targets).float().sum();
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    let entropy = (logp.clone().exp() * logp).sum().neg();
    Tensor::cat(vec![correct, entropy], 0)
}

/// The output of a step: the (unscaled, detached) mean loss, plus figures the training loop
/// fills in once per optimizer step.
#[derive(Clone, Debug)]
pub struct LmOutput<B: Backend> {
    /// Mean loss `[1]`.
    pub loss: Tensor<B, 1>,
    /// Everything else, already on the host.
    pub stats: StepStats,
    /// Supervised fine-tuning: `[correct, entropy]` summed over the loss tokens (see
    /// [`token_metrics`]), and the number of loss tokens.
    pub token_metrics: Option<(Tensor<B, 1>, usize)>,
}

/// The loss of a batch, and its token metrics when it is masked.
fn batch_loss<B: Backend>(
    model: &Gpt<B>,
    batch: LmBatch<B>,
) -> (Tensor<B, 1>, Option<(Tensor<B, 1>, usize)>) {
    match batch.loss_rows {
        None => (lm_loss(model, batch.inputs, batch.targets), None),
        Some(rows) => {
            let n = rows.dims()[0];
            let (loss, hidden, targets) = masked_lm_loss(
                model,
                batch.inputs,
                batch.targets,
                rows,
                batch.packing.as_ref(),
            );
            let metrics = token_metrics(model, hidden.detach(), targets);
            (loss, Some((metrics, n)))
        }
    }
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
        let loss_scale = batch.loss_scale;
        let ((loss, metrics), grads) = if batch.activation_checkpointing {
            let (out, tape) = recompute::record(|| batch_loss(self, batch));
            let grads = tape.backward(out.0.clone() * loss_scale, self);
            (out, grads)
        } else {
            let (loss, metrics) = batch_loss(self, batch);
            let grads = (loss.clone() * loss_scale).backward();
            ((loss, metrics), GradientsParams::from_grads(grads, self))
        };
        let stats = StepStats {
            tokens,
            ..StepStats::default()
        };
        TrainOutput {
            grads,
            item: LmOutput {
                loss: loss.detach(),
                stats,
                token_metrics: metrics.map(|(m, n)| (m.detach(), n)),
            },
        }
    }
}

impl<B: Backend> InferenceStep for Gpt<B> {
    type Input = LmBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: LmBatch<B>) -> LmOutput<B> {
        let tokens = batch.num_tokens();
        let (loss, token_metrics) = batch_loss(self, batch);
        LmOutput {
            loss,
            stats: StepStats {
                tokens,
                ..StepStats::default()
            },
            token_metrics,
        }
    }
}
