//! One optimizer step: the forward and backward passes of its micro-batches (split across the
//! devices), the mean gradient, global-norm clipping and the update, all queued on the device
//! without waiting for it (the figures are read back in batches, with the non-finite guard).

use burn::optim::GradientsAccumulator;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{Learner, TrainLoader, TrainOutput, TrainStep};

use super::clip::clip_global_norm_on_device;
use super::components::{ArcaneComponents, ArcaneLoop};
use super::readback::PendingStep;
use super::step::{LmBatch, LmOutput};
use crate::model::Gpt;

impl<B: AutodiffBackend> ArcaneLoop<B> {
    /// Runs optimizer step `step` (0-based): micro-batches `step · n .. (step + 1) · n` of the
    /// training loader, with `n = accumulation · devices`.
    pub(crate) fn optimizer_step(
        &self,
        learner: &mut Learner<ArcaneComponents<B>>,
        loader: &TrainLoader<ArcaneComponents<B>>,
        step: usize,
    ) -> PendingStep<B::InnerBackend> {
        if let Some(ddp) = &self.ddp {
            return self.ddp_step(ddp, learner, loader, step);
        }
        let c = &self.config;
        let n_devices = self.devices.len();
        let main = self.devices[0].clone();
        // Dropout's RNG is a function of (seed, step), so a resumed run draws what the
        // uninterrupted one would have.
        for device in &self.devices {
            B::seed(device, c.seed.wrapping_add(step as u64));
        }
        learner.lr_step();
        let lr = learner.lr_current();
        let per_step = self.micro_batches_per_step();
        let block = loader.slice(step * per_step, (step + 1) * per_step);
        let mut accumulator = GradientsAccumulator::<Gpt<B>>::new();
        let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
        let mut metrics: Option<(Tensor<B::InnerBackend, 1>, usize, usize)> = None;
        let batches: Vec<_> = block
            .iter()
            .map(|batch| LmBatch {
                activation_checkpointing: c.activation_checkpointing,
                ..batch
            })
            .collect();
        let real_tokens: usize = batches.iter().map(|b| b.real_tokens).sum();
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
                if let Some((m, n)) = output.item.token_metrics {
                    let m = m.inner().to_device(&main.clone().into());
                    metrics = Some(match metrics {
                        Some((sum, total, _)) => (sum + m, total + n, real_tokens),
                        None => (m, n, real_tokens),
                    });
                }
                accumulator.accumulate(&model, grads);
            }
        }
        let mut grads = accumulator.grads();
        // Nothing is read back here: the norm, the clipping and the loss stay on the device
        // until the loop reads a batch of steps (see `readback.rs`).
        let grad_norm =
            clip_global_norm_on_device(&learner.model(), &mut grads, c.optimizer.grad_clip);
        let loss = loss_sum.expect("a step has at least one micro-batch") / per_step as f64;
        learner.optimizer_step(grads);
        PendingStep {
            step: step + 1,
            lr,
            loss,
            grad_norm,
            token_metrics: metrics,
        }
    }

    /// Micro-batches in one optimizer step, over all devices.
    pub(crate) fn micro_batches_per_step(&self) -> usize {
        let n_devices = self.devices.len();
        self.config
            .accumulation(n_devices)
            .expect("validated before launch")
            * n_devices
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
                        let batch: LmBatch<B> = batch.to_device(device);
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
}
