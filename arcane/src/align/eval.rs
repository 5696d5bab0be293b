//! Reward of a policy's samples on held-out prompts, and their KL to a reference: the
//! before/after figures of RLHF. `samples` responses are drawn for the prompts in file order
//! (cycling), with per-sample seeds, so the same seed gives the reference and the trained
//! policy the same prompts and random streams.

use burn::prelude::*;
use serde::Serialize;

use super::logprob::{response_logprobs, response_targets, rollout_inputs};
use super::reward::RewardFn;
use super::rollout::{generate_batch, prompt_batches, row_seed, RolloutConfig};
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
    /// Prompts are cut to at most this many tokens.
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
    /// Response ids, cut before end-of-text.
    pub response: Vec<u32>,
    /// Its reward.
    pub reward: f64,
    /// `Σ_t log π - log π_ref` over its tokens.
    pub kl: f64,
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
    let (mut samples, mut row) = (Vec::with_capacity(config.samples), 0u64);
    for batch in prompt_batches(&picked, config.batch, config.max_prompt_tokens) {
        let seeds: Vec<u64> = (row..row + batch.len() as u64)
            .map(|r| row_seed(config.seed, 0, r))
            .collect();
        row += batch.len() as u64;
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
        let texts: Vec<Vec<u32>> = responses
            .iter()
            .map(|r| rollout.text_part(r).to_vec())
            .collect();
        let rewards = reward.score(&batch, &texts)?;
        let n = rollout.response_tokens;
        for (i, (prompt, text)) in batch.into_iter().zip(texts).enumerate() {
            let valid = rollout.valid_len(&responses[i]);
            let kl = diff[i * n..i * n + valid]
                .iter()
                .map(|&d| f64::from(d))
                .sum();
            samples.push(RewardSample {
                prompt,
                response: text,
                reward: f64::from(rewards[i]),
                kl,
            });
        }
    }
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
        samples,
    })
}
