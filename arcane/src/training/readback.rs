//! Step figures read back from the device in batches.
//!
//! Reading a loss or a gradient norm to the host waits for the device to finish everything
//! queued before it: done once per step, it empties a GPU's queue between steps while the host
//! prepares the next one. The loop therefore keeps each step's loss and norm on the device and
//! reads the ones still pending every `log_every` steps (and before every validation,
//! checkpoint and stop) in one transfer. Step times are only known per batch then: each step
//! of a batch is reported with the batch's mean. The non-finite guard looks at every step of
//! the batch in order: a run whose loss or gradient norm turned NaN or infinite stops at the
//! first such step, before anything after it is evaluated or checkpointed (on the CPU, which
//! computes eagerly, batching changes nothing but the reported times).

use std::time::Instant;

use burn::prelude::*;

/// What a step measured, once read back to the host.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepFigures {
    /// Mean loss over the step's micro-batches.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate the update used.
    pub lr: f64,
    /// Supervised fine-tuning's token figures.
    pub sft: Option<SftFigures>,
}

/// TRL's per-step token figures of supervised fine-tuning.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SftFigures {
    /// Share of loss tokens that are the argmax of the logits.
    pub mean_token_accuracy: f64,
    /// Mean entropy of the next-token distribution at the loss tokens.
    pub entropy: f64,
    /// Tokens of the step that are not padding.
    pub real_tokens: usize,
}

/// A step whose figures are still on the device.
pub(crate) struct PendingStep<B: Backend> {
    /// Steps completed after it (1-based).
    pub step: usize,
    /// The learning rate it used.
    pub lr: f64,
    /// Mean loss `[1]`.
    pub loss: Tensor<B, 1>,
    /// Global gradient norm before clipping `[1]`.
    pub grad_norm: Tensor<B, 1>,
    /// Supervised fine-tuning: `[correct, entropy]` summed over the step's loss tokens, their
    /// number, and the step's tokens that are not padding.
    pub token_metrics: Option<(Tensor<B, 1>, usize, usize)>,
}

/// A step whose loss or gradient norm was not finite.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NonFinite {
    /// The step (1-based).
    pub step: usize,
    /// Its mean loss.
    pub loss: f64,
    /// Its gradient norm.
    pub grad_norm: f64,
}

/// The steps queued since the last read-back and the time they started.
pub(crate) struct Pending<B: Backend> {
    steps: Vec<PendingStep<B>>,
    since: Instant,
}

impl<B: Backend> Pending<B> {
    /// Nothing pending; the clock starts now.
    pub fn new() -> Self {
        Self {
            steps: Vec::new(),
            since: Instant::now(),
        }
    }

    /// Steps waiting to be read.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Starts the clock again (after an evaluation or a checkpoint, which is not step time).
    pub fn restart_clock(&mut self) {
        self.since = Instant::now();
    }

    /// Queues a step.
    pub fn push(&mut self, step: PendingStep<B>) {
        self.steps.push(step);
    }

    /// Reads every pending step's loss and norm in one transfer (it waits for the device to
    /// finish them) and returns their figures with the seconds each took on average, or the
    /// first non-finite step (the figures of the steps before it come with it).
    pub fn read(&mut self) -> (Vec<(StepFigures, f64)>, Option<NonFinite>) {
        if self.steps.is_empty() {
            self.since = Instant::now();
            return (Vec::new(), None);
        }
        let steps = std::mem::take(&mut self.steps);
        let values: Vec<Tensor<B, 1>> = steps
            .iter()
            .flat_map(|s| [s.loss.clone(), s.grad_norm.clone()])
            .collect();
        let host: Vec<f64> = Tensor::cat(values, 0)
            .into_data()
            .convert::<f64>()
            .to_vec()
            .expect("f64 figures");
        let sft: Vec<Option<SftFigures>> = steps.iter().map(sft_figures).collect();
        let seconds = self.since.elapsed().as_secs_f64() / steps.len() as f64;
        self.since = Instant::now();
        let mut figures = Vec::with_capacity(steps.len());
        for ((s, pair), sft) in steps.iter().zip(host.chunks_exact(2)).zip(sft) {
            let (loss, grad_norm) = (pair[0], pair[1]);
            if !loss.is_finite() || !grad_norm.is_finite() {
                let bad = NonFinite {
                    step: s.step,
                    loss,
                    grad_norm,
                };
                return (figures, Some(bad));
            }
            let f = StepFigures {
                loss,
                grad_norm,
                lr: s.lr,
                sft,
            };
            figures.push((f, seconds));
        }
        (figures, None)
    }
}

/// Reads a step's token metrics (after its loss: the device has finished the step then).
fn sft_figures<B: Backend>(s: &PendingStep<B>) -> Option<SftFigures> {
    let (sums, n, real_tokens) = s.token_metrics.as_ref()?;
    let sums: Vec<f64> = sums
        .clone()
        .into_data()
        .convert::<f64>()
        .to_vec()
        .expect("f64 figures");
    let n = (*n).max(1) as f64;
    Some(SftFigures {
        mean_token_accuracy: sums[0] / n,
        entropy: sums[1] / n,
        real_tokens: *real_tokens,
    })
}
