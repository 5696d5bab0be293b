//! The policy with its value head, and PPO's clipped losses (Schulman et al. 2017,
//! arXiv:1707.06347; TRL v0.7 `PPOTrainer.loss`).
//!
//! The value head reads the same trunk pass as the policy (TRL's shared trunk): `v_t` is the
//! head on the hidden state that predicts `y_t`, the state before the token is chosen.

use burn::prelude::*;

use super::head::ScalarHead;
use super::logprob::{response_hidden, token_logprobs};
use crate::model::Gpt;

/// A policy and, for PPO, a zero-initialised value head on its trunk.
#[derive(Module, Debug)]
pub struct PolicyValue<B: Backend> {
    /// The language model being optimised.
    pub policy: Gpt<B>,
    /// `[C] -> [1]`; `None` for RLOO, which needs no critic.
    pub value: Option<ScalarHead<B>>,
}

/// What one forward pass over rollouts gives.
#[derive(Clone, Debug)]
pub struct ResponseOutput<B: Backend> {
    /// `[N, n, V]` logits at the positions predicting response tokens.
    pub logits: Tensor<B, 3>,
    /// `[N, n]` log-probabilities of the response tokens at the rollout temperature.
    pub logp: Tensor<B, 2>,
    /// `[N, n]` values of the states before each token, with a value head.
    pub values: Option<Tensor<B, 2>>,
}

impl<B: Backend> PolicyValue<B> {
    /// `policy` with a fresh zero value head (`with_value`) or none.
    pub fn new(policy: Gpt<B>, with_value: bool) -> Self {
        let value =
            with_value.then(|| ScalarHead::new(policy.config().d_model, 0.0, &policy.device()));
        Self { policy, value }
    }

    /// Log-probabilities and values of rollout responses.
    ///
    /// # Shapes
    /// - inputs: `[N, k + n]` (`[BOS] + prompt + response` without its last token)
    /// - targets: `[N, n]` (the response)
    pub fn forward_responses(
        &self,
        inputs: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        prompt_len: usize,
        temperature: f64,
        vocab_limit: usize,
    ) -> ResponseOutput<B> {
        let n = targets.dims()[1];
        let hidden = response_hidden(&self.policy, inputs, prompt_len, n); // [N, n, C]
        let values = self.value.as_ref().map(|v| v.forward(hidden.clone()));
        let logits = self.policy.head(hidden);
        let logp = token_logprobs(logits.clone(), targets, temperature, vocab_limit);
        ResponseOutput {
            logits,
            logp,
            values,
        }
    }
}

/// `Σ x·mask / Σ mask` (0 when the mask is empty).
pub(crate) fn masked_mean<B: Backend>(x: Tensor<B, 2>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
    (x * mask.clone()).sum() / mask.sum().clamp_min(1.0)
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// Figures of the clipped policy loss (TRL's `ppo/policy/*`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyLossStats {
    /// The loss.
    pub loss: f64,
    /// Fraction of tokens where the clipped branch is the larger loss.
    pub clipfrac: f64,
    /// `½ mean (log ρ)²` (Schulman's approximate KL).
    pub approxkl: f64,
    /// `mean (log π_old - log π)`.
    pub policykl: f64,
    /// Mean probability ratio `ρ`.
    pub ratio_mean: f64,
}

/// The clipped surrogate loss `mean max(-A ρ, -A clip(ρ, 1-ε, 1+ε))` with
/// `ρ = exp(log π - log π_old)`, over the tokens where `mask` is 1.
///
/// # Shapes
/// - logp, old_logp, advantages, mask: `[N, n]`
/// - output: `[1]`
pub fn policy_loss<B: Backend>(
    logp: Tensor<B, 2>,
    old_logp: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip: f64,
) -> (Tensor<B, 1>, PolicyLossStats) {
    let log_ratio = logp - old_logp;
    let ratio = log_ratio.clone().exp();
    let unclipped = advantages.clone().neg() * ratio.clone();
    let clipped = advantages.neg() * ratio.clone().clamp(1.0 - clip, 1.0 + clip);
    let loss = masked_mean(unclipped.clone().max_pair(clipped.clone()), mask.clone());
    let stats = PolicyLossStats {
        loss: scalar(loss.clone()),
        clipfrac: scalar(masked_mean(
            clipped.greater(unclipped).float(),
            mask.clone(),
        )),
        approxkl: scalar(masked_mean(log_ratio.clone().square(), mask.clone())) * 0.5,
        policykl: -scalar(masked_mean(log_ratio, mask.clone())),
        ratio_mean: scalar(masked_mean(ratio, mask)),
    };
    (loss, stats)
}

/// Figures of the clipped value loss (TRL's `ppo/val/*`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ValueLossStats {
    /// The loss.
    pub loss: f64,
    /// Fraction of tokens where the clipped branch is the larger loss.
    pub clipfrac: f64,
    /// Mean predicted value.
    pub mean: f64,
}

/// The clipped value loss `½ mean max((v - R)², (v_c - R)²)` with
/// `v_c = clip(v, v_old - ε_v, v_old + ε_v)`, over the tokens where `mask` is 1.
///
/// # Shapes
/// - values, old_values, returns, mask: `[N, n]`
/// - output: `[1]`
pub fn value_loss<B: Backend>(
    values: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    returns: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip_value: f64,
) -> (Tensor<B, 1>, ValueLossStats) {
    let clipped_values =
        old_values.clone() + (values.clone() - old_values).clamp(-clip_value, clip_value);
    let unclipped = (values.clone() - returns.clone()).square();
    let clipped = (clipped_values - returns).square();
    let loss = masked_mean(unclipped.clone().max_pair(clipped.clone()), mask.clone()) * 0.5;
    let stats = ValueLossStats {
        loss: scalar(loss.clone()),
        clipfrac: scalar(masked_mean(
            clipped.greater(unclipped).float(),
            mask.clone(),
        )),
        mean: scalar(masked_mean(values, mask)),
    };
    (loss, stats)
}
