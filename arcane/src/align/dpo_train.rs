//! The DPO training loop. The reference is the policy before the first update; its
//! log-probabilities of every pair are computed once up front (TRL's
//! `precompute_ref_log_probs`), so training holds one model. Log-probabilities cover the
//! completion tokens only (prompt and padding masked).

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::batch::{bos_of, vocab_limit_of};
use super::data::{check_pairs, epoch_batches, pair_batch, TokenPair};
use super::dpo::{dpo_loss, DpoLossKind, DpoStats};
use super::logprob::sequence_logprobs;
use super::optim::{AlignLog, OptimSettings, Updater};
use crate::error::{ArcaneError, Result};
use crate::lora::LoraConfig;
use crate::model::Gpt;

/// How to train with DPO. Defaults as TRL's `DPOConfig` (β 0.1, sigmoid loss, no label
/// smoothing) except the learning rate, which suits tiny models (TRL's 1e-6 is for 7B).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// β: the strength of the implicit KL constraint.
    pub beta: f64,
    /// Which loss.
    pub loss: DpoLossKind,
    /// Label smoothing ε of the sigmoid loss (cDPO).
    pub label_smoothing: f64,
    /// Passes over the pairs (when `max_steps` is not set).
    pub epochs: usize,
    /// Optimizer steps in all (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Pairs per step.
    pub batch_pairs: usize,
    /// Optimizer and schedule.
    pub optim: OptimSettings,
    /// Train LoRA adapters instead of the whole model.
    pub lora: Option<LoraConfig>,
    /// Seed of the adapters' initialisation and of the data order.
    pub seed: u64,
    /// Steps between held-out evaluations (0: only at the end).
    pub eval_every: usize,
    /// Ids scored at least (the tokenizer's vocabulary: GPT-2's with Arcane's ChatML tokens
    /// for a model fine-tuned on ChatML conversations); the default is [`vocab_limit_of`]
    /// the model's config, at most its vocabulary.
    pub vocab_limit: Option<usize>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss: DpoLossKind::Sigmoid,
            label_smoothing: 0.0,
            epochs: 1,
            max_steps: None,
            batch_pairs: 8,
            optim: OptimSettings {
                lr: 1e-5,
                min_lr_ratio: 0.1,
                ..OptimSettings::default()
            },
            lora: None,
            seed: 0,
            eval_every: 0,
            vocab_limit: None,
        }
    }
}

impl DpoConfig {
    /// The ids a model of `config` scores: [`vocab_limit_of`], raised to `vocab_limit`, at
    /// most the model's vocabulary.
    pub fn scored_ids(&self, config: &crate::model::ModelConfig) -> usize {
        vocab_limit_of(config)
            .max(self.vocab_limit.unwrap_or(0))
            .min(config.vocab_size)
    }

    /// Checks β and ε.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(ArcaneError::InvalidInput(format!(
                "beta must be a positive number, got {}",
                self.beta
            )));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(ArcaneError::InvalidInput(format!(
                "label smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            )));
        }
        Ok(())
    }
}

/// Reference log-probabilities of one pair's completions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairLogps {
    /// Of the chosen completion.
    pub chosen: f32,
    /// Of the rejected completion.
    pub rejected: f32,
}

/// Log-probabilities of both completions of `pairs` (`[P]` each) under `model`.
fn pair_logps<B: Backend>(
    model: &Gpt<B>,
    pairs: &[&TokenPair],
    mean: bool,
    limit: usize,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let config = model.config();
    let batch = pair_batch::<B>(pairs, bos_of(config), config.max_seq_len, &model.device());
    let logps = sequence_logprobs(model, &batch, limit, mean); // [2P]
    let n = pairs.len();
    (logps.clone().narrow(0, 0, n), logps.narrow(0, n, n))
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 values")
}

/// Log-probabilities of every pair under `model` (sums, or per-token means with `mean`), in
/// batches of `batch` pairs.
pub fn reference_logps<B: Backend>(
    model: &Gpt<B>,
    pairs: &[TokenPair],
    batch: usize,
    mean: bool,
) -> Vec<PairLogps> {
    let limit = vocab_limit_of(model.config());
    reference_logps_over(model, pairs, batch, mean, limit)
}

/// [`reference_logps`] over the first `limit` ids ([`DpoConfig::scored_ids`]).
pub fn reference_logps_over<B: Backend>(
    model: &Gpt<B>,
    pairs: &[TokenPair],
    batch: usize,
    mean: bool,
    limit: usize,
) -> Vec<PairLogps> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch.max(1)) {
        let refs: Vec<&TokenPair> = chunk.iter().collect();
        let (w, l) = pair_logps(model, &refs, mean, limit);
        out.extend(
            host(w)
                .into_iter()
                .zip(host(l))
                .map(|(chosen, rejected)| PairLogps { chosen, rejected }),
        );
    }
    out
}

fn ref_tensors<B: Backend>(refs: &[PairLogps], device: &B::Device) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let n = refs.len();
    let w: Vec<f32> = refs.iter().map(|r| r.chosen).collect();
    let l: Vec<f32> = refs.iter().map(|r| r.rejected).collect();
    (
        Tensor::from_data(TensorData::new(w, [n]), device),
        Tensor::from_data(TensorData::new(l, [n]), device),
    )
}

/// DPO metrics of `policy` on `pairs` against precomputed reference log-probabilities.
pub fn evaluate_dpo<B: Backend>(
    policy: &Gpt<B>,
    pairs: &[TokenPair],
    refs: &[PairLogps],
    config: &DpoConfig,
) -> DpoStats {
    let mean = config.loss.length_normalized();
    let limit = config.scored_ids(policy.config());
    let (mut pi_w, mut pi_l, mut loss_sum) = (Vec::new(), Vec::new(), 0.0);
    for (chunk, chunk_refs) in pairs.chunks(16).zip(refs.chunks(16)) {
        let rows: Vec<&TokenPair> = chunk.iter().collect();
        let (w, l) = pair_logps(policy, &rows, mean, limit);
        let (rw, rl) = ref_tensors::<B>(chunk_refs, &policy.device());
        let loss = dpo_loss(
            w.clone(),
            l.clone(),
            rw,
            rl,
            config.beta,
            config.loss,
            config.label_smoothing,
        );
        loss_sum += loss.into_scalar().elem::<f64>() * chunk.len() as f64;
        pi_w.extend(host(w));
        pi_l.extend(host(l));
    }
    let ref_w: Vec<f32> = refs.iter().map(|r| r.chosen).collect();
    let ref_l: Vec<f32> = refs.iter().map(|r| r.rejected).collect();
    let loss = loss_sum / pairs.len().max(1) as f64;
    DpoStats::of(&pi_w, &pi_l, &ref_w, &ref_l, config.beta, loss)
}

fn record(log: &mut AlignLog, step: usize, named: &[(String, f64)]) -> Result<()> {
    let values: Vec<(&str, f64)> = named.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    log.record("dpo", step, &values)
}

/// Trains `policy` (consumed) with DPO on `train` pairs, evaluating on `eval` pairs (if any)
/// every `eval_every` steps and at the end. Returns the trained policy (with its adapters
/// when `config.lora` is set) and its last held-out metrics.
pub fn train_dpo<B: AutodiffBackend>(
    policy: Gpt<B>,
    train: &[TokenPair],
    eval: &[TokenPair],
    config: &DpoConfig,
    log: &mut AlignLog,
) -> Result<(Gpt<B>, Option<DpoStats>)> {
    config.validate()?;
    if train.is_empty() {
        return Err(ArcaneError::InvalidInput("no training pairs".into()));
    }
    let limit = config.scored_ids(policy.config());
    check_pairs(train, limit)?;
    check_pairs(eval, limit)?;
    let device = policy.device();
    B::seed(&device, config.seed);
    let mut model = match &config.lora {
        Some(lora) => crate::lora::apply_lora(policy, lora)?,
        None => policy,
    };
    let mean = config.loss.length_normalized();
    // Fresh adapters change nothing, so the reference is the model as it is now.
    let reference = model.valid();
    let ref_train = reference_logps_over(&reference, train, 16, mean, limit);
    let ref_eval = reference_logps_over(&reference, eval, 16, mean, limit);
    drop(reference);
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
        let refs: Vec<PairLogps> = rows.iter().map(|&r| ref_train[r]).collect();
        let (pi_w, pi_l) = pair_logps(&model, &pairs, mean, limit);
        let (ref_w, ref_l) = ref_tensors::<B>(&refs, &device);
        let (hw, hl) = (host(pi_w.clone()), host(pi_l.clone()));
        let loss = dpo_loss(
            pi_w,
            pi_l,
            ref_w,
            ref_l,
            config.beta,
            config.loss,
            config.label_smoothing,
        );
        let (next, report) = updater.step(model, loss)?;
        model = next;
        let (rw, rl): (Vec<f32>, Vec<f32>) = refs.iter().map(|r| (r.chosen, r.rejected)).unzip();
        let mut named = DpoStats::of(&hw, &hl, &rw, &rl, config.beta, report.loss).named("");
        named.push(("learning_rate".into(), report.lr));
        named.push(("grad_norm".into(), report.grad_norm));
        record(log, i + 1, &named)?;
        let last = i + 1 == steps.len();
        let due = config.eval_every > 0 && (i + 1) % config.eval_every == 0;
        if !eval.is_empty() && (due || last) {
            let stats = evaluate_dpo(&model.valid(), eval, &ref_eval, config);
            record(log, i + 1, &stats.named("eval/"))?;
            held_out = Some(stats);
        }
    }
    Ok((model, held_out))
}
