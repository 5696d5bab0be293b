//! Reward of a policy's samples on held-out prompts, and their KL to a reference: the
//! before/after figures of RLHF. `samples` responses are drawn for the prompts in file order
//! (cycling), with per-sample seeds, so the same seed gives the reference and the trained
//! policy the same prompts and random streams.

use burn::prelude::*;
use serde::Serialize;

use super::logprob::{response_logprobs, response_targets, rollout_inputs};
use super::reward::RewardFn;
use super::rollout::{
    equal_length_batches, generate_batch, prompt_batches, row_seed, RolloutConfig,
};
use crate::error::{ArcaneError, Result};
use crate::model::Gpt;

/// How to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct RewardEvalConfig {
    /// Responses to sample.
    pub samples: usize,
    /// Rows per sampling batch.
    pub batch: usize,
    /// Seed of the samples.
    pub seed: u64,
    /// Prompts are cut to at most this many tokens (chat prompts never are).
    pub max_prompt_tokens: usize,
}

impl Default for RewardEvalConfig {
    fn default() -> Self {
        Self {
            samples: 256,
            batch: 32,
            seed: 0,
            max_prompt_tokens: 8,
        }
    }
}

/// One evaluated sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewardSample {
    /// Prompt ids (cut).
    pub prompt: Vec<u32>,
    /// Response ids, cut before end-of-text (or end of turn).
    pub response: Vec<u32>,
    /// Its reward.
    pub reward: f64,
    /// `Σ_t log π - log π_ref` over its tokens.
    pub kl: f64,
    /// Whether it ended (EOS or end of turn) within the response length.
    pub ended: bool,
}

/// The figures of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewardEval {
    /// Samples.
    pub n: usize,
    /// Mean reward.
    pub reward_mean: f64,
    /// Standard deviation of the rewards.
    pub reward_std: f64,
    /// Mean KL to the reference per sequence (nats).
    pub kl_mean: f64,
    /// Fraction of responses that ended (EOS or end of turn) within the response length.
    pub ended: f64,
    /// Every sample.
    #[serde(skip)]
    pub samples: Vec<RewardSample>,
}

/// Samples `config.samples` responses of `policy` to `prompts` (ids without BOS), scores them
/// with `reward`, and measures their KL to `reference`.
pub fn evaluate_reward<B: Backend>(
    policy: &Gpt<B>,
    reference: &Gpt<B>,
    prompts: &[Vec<u32>],
    reward: &mut dyn RewardFn,
    rollout: &RolloutConfig,
    config: &RewardEvalConfig,
) -> Result<RewardEval> {
    if prompts.is_empty() || config.samples == 0 {
        return Err(ArcaneError::InvalidInput(
            "no prompts or no samples to evaluate".into(),
        ));
    }
    let picked: Vec<Vec<u32>> = (0..config.samples)
        .map(|i| prompts[i % prompts.len()].clone())
        .collect();
    let device = policy.device();
    let mut samples = Vec::with_capacity(config.samples);
    for (rows, batch) in eval_batches(&picked, rollout, config) {
        let seeds: Vec<u64> = rows
            .iter()
            .map(|&r| row_seed(config.seed, 0, r as u64))
            .collect();
        let responses = generate_batch(policy, &batch, rollout, &seeds)?;
        let k = batch[0].len();
        let inputs = rollout_inputs::<B>(rollout.bos, &batch, &responses, &device);
        let targets = response_targets::<B>(&responses, &device);
        let (t, limit) = (rollout.temperature, rollout.vocab_limit);
        let logp = response_logprobs(policy, inputs.clone(), targets.clone(), k, t, limit);
        let ref_logp = response_logprobs(reference, inputs, targets, k, t, limit);
        let diff: Vec<f32> = (logp - ref_logp)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32");
        let read: Vec<Vec<u32>> = responses
            .iter()
            .map(|r| rollout.reward_part(r).to_vec())
            .collect();
        let rewards = reward.score(&batch, &read)?;
        let n = rollout.response_tokens;
        for (i, prompt) in batch.into_iter().enumerate() {
            let valid = rollout.valid_len(&responses[i]);
            let kl = diff[i * n..i * n + valid]
                .iter()
                .map(|&d| f64::from(d))
                .sum();
            let sample = RewardSample {
                prompt,
                response: rollout.text_part(&responses[i]).to_vec(),
                reward: f64::from(rewards[i]),
                kl,
                ended: rollout.ended(&responses[i]),
            };
            samples.push((rows[i], sample));
        }
    }
    // Chat batches group prompts by length: back to the prompts' order.
    samples.sort_by_key(|(row, _)| *row);
    let samples: Vec<RewardSample> = samples.into_iter().map(|(_, s)| s).collect();
    let n = samples.len() as f64;
    let reward_mean = samples.iter().map(|s| s.reward).sum::<f64>() / n;
    let reward_std = (samples
        .iter()
        .map(|s| (s.reward - reward_mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    Ok(RewardEval {
        n: samples.len(),
        reward_mean,
        reward_std,
        kl_mean: samples.iter().map(|s| s.kl).sum::<f64>() / n,
        ended: samples.iter().filter(|s| s.ended).count() as f64 / n,
        samples,
    })
}

/// The sampling batches of an evaluation, each with its rows' indices into `picked` (which
/// seed each row): consecutive rows cut to one length, or chat prompts grouped by length
/// (never cut).
fn eval_batches(
    picked: &[Vec<u32>],
    rollout: &RolloutConfig,
    config: &RewardEvalConfig,
) -> Vec<(Vec<usize>, Vec<Vec<u32>>)> {
    if rollout.chat {
        return equal_length_batches(picked, config.batch)
            .into_iter()
            .map(|rows| {
                let batch = rows.iter().map(|&i| picked[i].clone()).collect();
                (rows, batch)
            })
            .collect();
    }
    let mut start = 0;
    prompt_batches(picked, config.batch, config.max_prompt_tokens)
        .into_iter()
        .map(|batch| {
            let rows = (start..start + batch.len()).collect();
            start += batch.len();
            (rows, batch)
        })
        .collect()
}
