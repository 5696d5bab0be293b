//! Multi-GPU training on Burn's NCCL data parallel (DDP; feature `ddp`, CUDA-only builds).
//!
//! One thread per device ("rank"), each with its own copy of the learner (model, grouped
//! AdamW, LR schedule) whose parameters are marked distributed (burn-train's
//! `Learner::grad_sharded`). Burn's autodiff then all-reduces each parameter's gradient over
//! NCCL as soon as the backward pass has finished it (burn-autodiff `src/distributed.rs`,
//! overlapping the rest of the backward pass), so every rank holds the same reduced gradient,
//! clips it the same way and applies the same update: the copies stay identical without any
//! broadcast of weights. Rank 0 runs Arcane's loop (`strategy.rs`) on device 0: it commands
//! the other ranks one optimizer step at a time (they never run ahead of it, so a stop never
//! leaves a rank waiting in an all-reduce), averages their losses into the step's figures, and
//! alone evaluates and writes checkpoints. The arithmetic is [`DdpPlan`]; the steps are in
//! `ddp_step.rs`.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::config::TrainingConfig;
use crate::error::{ArcaneError, Result};

/// How one optimizer step's global batch is split over `devices` ranks.
///
/// With a global batch of `G = tokens_per_step` tokens (as on one device), micro-batches of
/// `b` sequences of `T` tokens and `N` devices:
/// - `P = G / (b·T)` micro-batches per step, as one device would run them;
/// - each rank runs `A = P / N` of them (its accumulation steps): `G` must be a multiple of
///   `N·b·T`, or the plan is refused;
/// - micro-batch `k` of the step goes to rank `k mod N` in round `k div N`, so the step's
///   micro-batches are exactly those of the single-device step;
/// - each micro-batch's mean loss is multiplied by `1/P` before its backward pass; the
///   all-reduce **sums** over ranks (`ReduceOperation::Sum`, NCCL's `ncclSum`) and each rank
///   sums its `A` rounds, so every rank ends with `Σ_ranks Σ_rounds g/P`, the mean gradient of
///   the `P` micro-batches: the single-device gradient of the global batch;
/// - clipping takes the global norm of that reduced gradient (identical on every rank);
/// - the LR schedule steps once per optimizer step on each rank, as on one device;
/// - the reported loss is `Σ loss / P`: the mean over devices of each device's mean loss
///   (every device runs the same number of micro-batches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DdpPlan {
    /// `N`, the ranks (devices).
    pub devices: usize,
    /// `b`, sequences per micro-batch.
    pub micro_batch: usize,
    /// `T`, tokens per sequence.
    pub seq_len: usize,
    /// `A`, micro-batches each rank runs per optimizer step.
    pub accumulation: usize,
}

impl DdpPlan {
    /// The plan for a global batch of `tokens_per_step` tokens; an error that names the
    /// nearest valid sizes when it does not split evenly.
    pub fn new(
        tokens_per_step: usize,
        micro_batch: usize,
        seq_len: usize,
        devices: usize,
    ) -> Result<Self> {
        if devices == 0 || micro_batch == 0 || seq_len == 0 {
            return Err(ArcaneError::InvalidConfig(format!(
                "data parallelism needs at least one device, sequence and token \
                 (got {devices} devices, micro_batch {micro_batch}, seq_len {seq_len})"
            )));
        }
        let per_round = devices * micro_batch * seq_len;
        if tokens_per_step == 0 || tokens_per_step % per_round != 0 {
            let lower = tokens_per_step / per_round * per_round;
            let nearest = match lower {
                0 => per_round.to_string(),
                _ => format!("{lower} or {}", lower + per_round),
            };
            return Err(ArcaneError::InvalidConfig(format!(
                "the global batch of {tokens_per_step} tokens does not split over {devices} \
                 devices: it must be a whole multiple of devices x micro_batch x seq_len \
                 ({devices} x {micro_batch} x {seq_len} = {per_round}); use tokens_per_step \
                 {nearest}, or change micro_batch or the device count"
            )));
        }
        Ok(Self {
            devices,
            micro_batch,
            seq_len,
            accumulation: tokens_per_step / per_round,
        })
    }

    /// The plan of a run's config over `devices` devices.
    pub fn of(config: &TrainingConfig, devices: usize) -> Result<Self> {
        Self::new(
            config.tokens_per_step,
            config.micro_batch,
            config.seq_len(),
            devices,
        )
    }

    /// `P = N·A`, micro-batches per optimizer step over all ranks.
    pub fn micro_batches_per_step(&self) -> usize {
        self.devices * self.accumulation
    }

    /// `G`, tokens per optimizer step over all ranks.
    pub fn tokens_per_step(&self) -> usize {
        self.micro_batches_per_step() * self.micro_batch * self.seq_len
    }

    /// The factor on each micro-batch's mean loss before its backward pass: `1/P`, so that
    /// the summed all-reduce of the accumulated gradients is their mean.
    pub fn loss_scale(&self) -> f64 {
        1.0 / self.micro_batches_per_step() as f64
    }

    /// The run-wide index of the micro-batch that rank `rank` runs in round `round` of
    /// optimizer step `step` (0-based): `step·P + round·N + rank`.
    pub fn micro_batch_index(&self, step: usize, rank: usize, round: usize) -> usize {
        step * self.micro_batches_per_step() + round * self.devices + rank
    }

    /// The step's loss from each rank's sum of micro-batch mean losses: `Σ / P`.
    pub fn mean_loss(&self, rank_loss_sums: &[f64]) -> f64 {
        rank_loss_sums.iter().sum::<f64>() / self.micro_batches_per_step() as f64
    }
}

/// The data-parallel state of a run: its plan and the secondary ranks, started by rank 0's
/// first step (from its learner as it stands then: fresh or restored).
pub(crate) struct Ddp<B: AutodiffBackend> {
    pub(crate) plan: DdpPlan,
    pub(crate) peers: Mutex<Option<Peers<B>>>,
}

impl<B: AutodiffBackend> Ddp<B> {
    /// A run split by `plan`, before its secondary ranks start.
    pub(crate) fn new(plan: DdpPlan) -> Self {
        Self {
            plan,
            peers: Mutex::new(None),
        }
    }

    /// Stops the secondary ranks after their last commanded step; an error if one failed.
    pub(crate) fn shutdown(&self) -> Result<()> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner()).take();
        peers.map_or(Ok(()), Peers::join)
    }
}

/// What a rank needs to run one of its steps.
#[derive(Clone, Copy)]
pub(crate) struct RankJob {
    pub(crate) plan: DdpPlan,
    pub(crate) rank: usize,
    pub(crate) seed: u64,
    pub(crate) grad_clip: f64,
    /// Recompute each block in the backward pass (the config's `activation_checkpointing`).
    pub(crate) activation_checkpointing: bool,
}

/// The secondary ranks `1..N`, each a thread that runs the steps rank 0 sends it.
pub(crate) struct Peers<B: AutodiffBackend> {
    pub(crate) commands: Vec<Sender<usize>>,
    pub(crate) losses: Vec<Receiver<Tensor<B::InnerBackend, 1>>>,
    pub(crate) workers: Vec<JoinHandle<()>>,
}

impl<B: AutodiffBackend> Peers<B> {
    /// Waits for every rank to finish: closing the command channels ends their loops.
    pub(crate) fn join(self) -> Result<()> {
        drop(self.commands);
        let failed = self
            .workers
            .into_iter()
            .map(JoinHandle::join)
            .filter(std::result::Result::is_err)
            .count();
        match failed {
            0 => Ok(()),
            n => Err(ArcaneError::InvalidInput(format!(
                "{n} data-parallel rank(s) failed; see the panic message above"
            ))),
        }
    }
}
