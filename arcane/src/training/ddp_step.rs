//! The steps of a data-parallel run (see `ddp.rs`): the secondary ranks' threads, one rank's
//! share of an optimizer step, and rank 0's step that commands the others.

use std::sync::mpsc::channel;

use burn::optim::GradientsAccumulator;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{Learner, TrainLoader};

use super::clip::clip_global_norm_on_device;
use super::components::{ArcaneComponents, ArcaneLoop};
use super::ddp::{Ddp, Peers, RankJob};
use super::readback::PendingStep;
use crate::model::Gpt;

impl<B: AutodiffBackend> Peers<B> {
    /// Starts ranks `1..N` on `devices[1..]` with copies of `learner` (already marked).
    pub(crate) fn spawn(
        learner: &Learner<ArcaneComponents<B>>,
        loader: &TrainLoader<ArcaneComponents<B>>,
        devices: &[B::Device],
        job: RankJob,
    ) -> Self {
        let mut peers = Self {
            commands: Vec::new(),
            losses: Vec::new(),
            workers: Vec::new(),
        };
        for (rank, device) in devices.iter().enumerate().skip(1) {
            let (command_tx, command_rx) = channel::<usize>();
            let (loss_tx, loss_rx) = channel();
            let (mut learner, device) = (learner.clone(), device.clone());
            let loader = loader.to_device(&device);
            let job = RankJob { rank, ..job };
            peers.workers.push(std::thread::spawn(move || {
                learner.fork(&device);
                mark_distributed(&mut learner);
                while let Ok(step) = command_rx.recv() {
                    let (loss_sum, _) = rank_step(&mut learner, &loader, job, step, &device);
                    if loss_tx.send(loss_sum).is_err() {
                        break;
                    }
                }
            }));
            peers.commands.push(command_tx);
            peers.losses.push(loss_rx);
        }
        peers
    }
}

/// Marks the learner's parameters distributed, so that their gradients are all-reduced in
/// the backward pass (a no-op without the `ddp` feature, where no [`Ddp`] is ever built).
fn mark_distributed<B: AutodiffBackend>(_learner: &mut Learner<ArcaneComponents<B>>) {
    #[cfg(feature = "ddp")]
    _learner.grad_sharded();
}

/// The forward and backward passes of rank `job.rank`'s micro-batches of optimizer step
/// `step`, then clipping and the update of its learner. Returns the sum of its micro-batches'
/// mean losses and the global gradient norm `[1]`, both on `device` (nothing is read back).
fn rank_step<B: AutodiffBackend>(
    learner: &mut Learner<ArcaneComponents<B>>,
    loader: &TrainLoader<ArcaneComponents<B>>,
    job: RankJob,
    step: usize,
    device: &B::Device,
) -> (Tensor<B::InnerBackend, 1>, Tensor<B::InnerBackend, 1>) {
    // Dropout's RNG is a function of (seed, step), as on the gathering path.
    B::seed(device, job.seed.wrapping_add(step as u64));
    learner.lr_step();
    let mut accumulator = GradientsAccumulator::<Gpt<B>>::new();
    let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
    for round in 0..job.plan.accumulation {
        let k = job.plan.micro_batch_index(step, job.rank, round);
        let mut batch = loader
            .slice(k, k + 1)
            .iter()
            .next()
            .expect("the training loader holds every micro-batch of the run");
        batch.activation_checkpointing = job.activation_checkpointing;
        let output = learner.train_step(batch);
        let loss = output.item.loss.inner();
        loss_sum = Some(match loss_sum {
            Some(sum) => sum + loss,
            None => loss,
        });
        accumulator.accumulate(&learner.model(), output.grads);
    }
    let mut grads = accumulator.grads();
    let grad_norm = clip_global_norm_on_device(&learner.model(), &mut grads, job.grad_clip);
    learner.optimizer_step(grads);
    let loss_sum = loss_sum.expect("a rank runs at least one micro-batch per step");
    (loss_sum, grad_norm)
}

impl<B: AutodiffBackend> ArcaneLoop<B> {
    /// Optimizer step `step` (0-based) on rank 0, with the other ranks commanded to run theirs
    /// alongside; the loss is the mean over all ranks' micro-batches.
    pub(crate) fn ddp_step(
        &self,
        ddp: &Ddp<B>,
        learner: &mut Learner<ArcaneComponents<B>>,
        loader: &TrainLoader<ArcaneComponents<B>>,
        step: usize,
    ) -> PendingStep<B::InnerBackend> {
        let job = RankJob {
            plan: ddp.plan,
            rank: 0,
            seed: self.config.seed,
            grad_clip: self.config.optimizer.grad_clip,
            activation_checkpointing: self.config.activation_checkpointing,
        };
        let main = self.devices[0].clone();
        let mut peers = ddp.peers.lock().unwrap_or_else(|e| e.into_inner());
        let peers = peers.get_or_insert_with(|| {
            // Rank 0's parameters are marked in place; the copies are marked on their device.
            let peers = Peers::spawn(learner, loader, &self.devices, job);
            mark_distributed(learner);
            peers
        });
        for command in &peers.commands {
            command
                .send(step)
                .expect("a data-parallel rank stopped early; see its panic message above");
        }
        let (mut loss, grad_norm) = rank_step(learner, loader, job, step, &main);
        for rank_loss in &peers.losses {
            let rank_loss = rank_loss
                .recv()
                .expect("a data-parallel rank stopped early; see its panic message above");
            loss = loss + rank_loss.to_device(&main.clone().into());
        }
        PendingStep {
            step: step + 1,
            lr: learner.lr_current(),
            loss: loss / ddp.plan.micro_batches_per_step() as f64,
            grad_norm,
            // Pre-training only: SFT's per-token metrics are not gathered across ranks.
            token_metrics: None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The lockstep step on one rank (no NCCL on the CPU: with one rank nothing is reduced)
    //! must compute exactly what the single-device step computes: same micro-batches, loss
    //! scaling, schedule, clipping and reported loss.

    use burn::backend::{Autodiff, Flex};

    use crate::data::write_shard;
    use crate::model::ModelConfig;
    use crate::training::{read_metrics, MetricRecord, TrainOptions, TrainingConfig};

    type B = Autodiff<Flex>;

    fn train_figures(dir: &std::path::Path, name: &str, ddp: bool) -> Vec<(f64, f64, f64)> {
        let config = TrainingConfig {
            model: ModelConfig {
                max_seq_len: 32,
                ..ModelConfig::tiny()
            },
            micro_batch: 2,
            tokens_per_step: 3 * 2 * 32,
            max_steps: 3,
            eval_every: 3,
            eval_tokens: 64,
            checkpoint_every: 3,
            sample_tokens: 0,
            ..TrainingConfig::tiny_cpu()
        };
        let mut options = TrainOptions::<B>::new(dir.join(name), dir);
        options.dashboard = Some(false);
        super::super::run::train_on(config, options, vec![Default::default()], ddp).unwrap();
        read_metrics(&dir.join(name).join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                MetricRecord::Train {
                    loss,
                    lr,
                    grad_norm,
                    ..
                } => Some((loss, lr, grad_norm)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_rank_computes_the_single_device_steps() {
        let tmp = tempfile::tempdir().unwrap();
        let tokens: Vec<u16> = (0..12_000u32)
            .map(|i| ((i * 7 + i / 13) % 256) as u16)
            .collect();
        write_shard(&tmp.path().join("train_000000.bin"), &tokens[..10_000]).unwrap();
        write_shard(&tmp.path().join("val_000000.bin"), &tokens[10_000..]).unwrap();
        let single = train_figures(tmp.path(), "single", false);
        let ddp = train_figures(tmp.path(), "ddp", true);
        assert_eq!(single.len(), 3);
        // The same operations in the same order: equal to the last bit.
        assert_eq!(single, ddp);
        // And the steps did train (the loss moved).
        assert_ne!(single[0].0, single[2].0);
    }
}
