//! Training a reward model on preference pairs with the Bradley-Terry loss (Bradley & Terry
//! 1952; Ouyang et al. 2022, eq. 1; TRL's `RewardTrainer`):
//!
//! `L = -mean log σ(r(x, y_w) - r(x, y_l) - m) + c · mean (r(x, y_w) + r(x, y_l))²`
//!
//! with an optional per-pair margin `m` (Llama 2) and an optional centring coefficient `c`
//! (Eisenstein et al. 2023; TRL's `center_rewards_coefficient`, 0.01 recommended) that keeps
//! rewards near zero. Full fine-tuning of the trunk, or LoRA on it (the head always trains).

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::batch::bos_of;
use super::data::{check_pairs, epoch_batches, pair_batch, TokenPair};
use super::optim::{AlignLog, OptimSettings, Updater};
use super::reward::RewardModel;
use crate::error::{ArcaneError, Result};
use crate::lora::LoraConfig;
use crate::model::Gpt;

/// How to train a reward model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Passes over the pairs (when `max_steps` is not set).
    pub epochs: usize,
    /// Optimizer steps in all (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Pairs per step.
    pub batch_pairs: usize,
    /// Optimizer and schedule.
    pub optim: OptimSettings,
    /// Subtract each pair's `margin` inside the sigmoid.
    pub use_margin: bool,
    /// Centring coefficient `c` (0: off).
    pub center_rewards: f64,
    /// Train LoRA adapters on the frozen trunk instead of the whole trunk.
    pub lora: Option<LoraConfig>,
    /// Seed of the head's initialisation and of the data order.
    pub seed: u64,
    /// Steps between held-out evaluations (0: only at the end).
    pub eval_every: usize,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_steps: None,
            batch_pairs: 16,
            optim: OptimSettings {
                lr: 1e-4,
                min_lr_ratio: 0.1,
                ..OptimSettings::default()
            },
            use_margin: false,
            center_rewards: 0.0,
            lora: None,
            seed: 0,
            eval_every: 0,
        }
    }
}

/// The Bradley-Terry loss of a batch of pairs.
///
/// # Shapes
/// - chosen, rejected, margin: `[P]`
/// - output: `[1]`
pub fn reward_loss<B: Backend>(
    chosen: Tensor<B, 1>,
    rejected: Tensor<B, 1>,
    margin: Option<Tensor<B, 1>>,
    center: f64,
) -> Tensor<B, 1> {
    let diff = chosen.clone() - rejected.clone();
    let diff = match margin {
        Some(m) => diff - m,
        None => diff,
    };
    let loss = log_sigmoid(diff).mean().neg();
    if center > 0.0 {
        loss + (chosen + rejected).square().mean() * center
    } else {
        loss
    }
}

/// Pairwise figures of a reward model on pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PairwiseStats {
    /// Pairs.
    pub n: usize,
    /// Fraction with `r_w > r_l` (ties count as wrong, as TRL).
    pub accuracy: f64,
    /// Mean `r_w - r_l`.
    pub margin_mean: f64,
    /// Mean Bradley-Terry loss (without centring).
    pub loss: f64,
    /// Mean `r_w`.
    pub chosen_mean: f64,
    /// Mean `r_l`.
    pub rejected_mean: f64,
}

impl PairwiseStats {
    /// The figures of rewards `chosen[i]` vs `rejected[i]` with margins `margins[i]`.
    pub fn of(chosen: &[f32], rejected: &[f32], margins: &[f32]) -> Self {
        let n = chosen.len();
        let mean = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>() / n.max(1) as f64;
        let d = |i: usize| f64::from(chosen[i]) - f64::from(rejected[i]);
        Self {
            n,
            accuracy: mean(&|i| f64::from(u8::from(chosen[i] > rejected[i]))),
            margin_mean: mean(&d),
            // -log σ(x) = softplus(-x) = ln(1 + e^{-x}), computed stably.
            loss: mean(&|i| {
                let x = d(i) - f64::from(margins.get(i).copied().unwrap_or(0.0));
                (-x).max(0.0) + (-x.abs()).exp().ln_1p()
            }),
            chosen_mean: mean(&|i| f64::from(chosen[i])),
            rejected_mean: mean(&|i| f64::from(rejected[i])),
        }
    }
}

/// Scores both sides of every pair and measures accuracy, margin and loss.
pub fn evaluate_reward_model<B: Backend>(
    model: &RewardModel<B>,
    pairs: &[TokenPair],
    batch: usize,
    use_margin: bool,
) -> PairwiseStats {
    let prompts: Vec<Vec<u32>> = pairs.iter().map(|p| p.prompt.clone()).collect();
    let chosen: Vec<Vec<u32>> = pairs.iter().map(|p| p.chosen.clone()).collect();
    let rejected: Vec<Vec<u32>> = pairs.iter().map(|p| p.rejected.clone()).collect();
    let margins: Vec<f32> = pairs
        .iter()
        .map(|p| if use_margin { p.margin } else { 0.0 })
        .collect();
    PairwiseStats::of(
        &model.score_texts(&prompts, &chosen, batch),
        &model.score_texts(&prompts, &rejected, batch),
        &margins,
    )
}

fn host(t: Tensor<impl Backend, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 values")
}

/// Trains a reward model on `base` (consumed) with `train` pairs, evaluating on `eval` pairs
/// (if any) every `eval_every` steps and at the end. Returns the model and its last held-out
/// figures.
pub fn train_reward_model<B: AutodiffBackend>(
    base: Gpt<B>,
    train: &[TokenPair],
    eval: &[TokenPair],
    config: &RewardConfig,
    log: &mut AlignLog,
) -> Result<(RewardModel<B>, Option<PairwiseStats>)> {
    if train.is_empty() {
        return Err(ArcaneError::InvalidInput("no training pairs".into()));
    }
    let (bos, ctx) = (bos_of(base.config()), base.config().max_seq_len);
    // A reward model reads hidden states, not a softmax: any row of the vocabulary (Arcane's
    // ChatML tokens on the padded rows included) can be scored.
    check_pairs(train, base.config().vocab_size)?;
    check_pairs(eval, base.config().vocab_size)?;
    let device = base.device();
    B::seed(&device, config.seed);
    let trunk = match &config.lora {
        Some(lora) => crate::lora::apply_lora(base, lora)?,
        None => base,
    };
    let mut model = RewardModel::new(trunk);
    let steps = epoch_batches(
        train.len(),
        config.batch_pairs,
        config.epochs,
        config.max_steps,
        config.seed,
    );
    let mut updater = Updater::new(&config.optim, steps.len(), &model);
    let mut held_out = None;
    for (i, rows) in steps.iter().enumerate() {
        let pairs: Vec<&TokenPair> = rows.iter().map(|&r| &train[r]).collect();
        let n = pairs.len();
        let rewards = model.forward(&pair_batch::<B>(&pairs, bos, ctx, &device)); // [2P]
        let (chosen, rejected) = (rewards.clone().narrow(0, 0, n), rewards.narrow(0, n, n));
        let margins: Vec<f32> = pairs
            .iter()
            .map(|p| if config.use_margin { p.margin } else { 0.0 })
            .collect();
        let stats = PairwiseStats::of(&host(chosen.clone()), &host(rejected.clone()), &margins);
        let margin = config
            .use_margin
            .then(|| Tensor::from_data(TensorData::new(margins, [n]), &device));
        let loss = reward_loss(chosen, rejected, margin, config.center_rewards);
        let (next, report) = updater.step(model, loss)?;
        model = next;
        log.record(
            "reward",
            i + 1,
            &[
                ("loss", report.loss),
                ("accuracy", stats.accuracy),
                ("margin", stats.margin_mean),
                ("rewards/chosen", stats.chosen_mean),
                ("rewards/rejected", stats.rejected_mean),
                ("learning_rate", report.lr),
                ("grad_norm", report.grad_norm),
            ],
        )?;
        let last = i + 1 == steps.len();
        let due = config.eval_every > 0 && (i + 1) % config.eval_every == 0;
        if !eval.is_empty() && (due || last) {
            let s = evaluate_reward_model(&model.valid(), eval, 32, config.use_margin);
            log.record(
                "reward",
                i + 1,
                &[
                    ("eval/loss", s.loss),
                    ("eval/accuracy", s.accuracy),
                    ("eval/margin", s.margin_mean),
                ],
            )?;
            held_out = Some(s);
        }
    }
    Ok((model, held_out))
}
