//! The configuration of PPO and RLOO runs, with the defaults of classic RLHF (TRL v0.7's
//! `PPOConfig`, OpenAI's lm-human-preferences) sized for tiny models on a CPU.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::optim::OptimSettings;
use crate::error::{ArcaneError, Result};
use crate::lora::LoraConfig;

/// Which policy-gradient method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algo {
    /// PPO with a value head, GAE and per-token KL penalties.
    Ppo,
    /// REINFORCE with a leave-one-out baseline over `k` samples per prompt; no value head.
    Rloo,
}

impl Algo {
    /// `ppo` or `rloo`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ppo => "ppo",
            Self::Rloo => "rloo",
        }
    }
}

impl FromStr for Algo {
    type Err = ArcaneError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ppo" => Ok(Self::Ppo),
            "rloo" => Ok(Self::Rloo),
            other => Err(ArcaneError::InvalidInput(format!(
                "unknown algorithm {other:?}; choose ppo or rloo"
            ))),
        }
    }
}

/// A PPO or RLOO run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    /// PPO or RLOO.
    pub algo: Algo,
    /// Iterations: each samples `rollouts` responses and learns from them.
    pub iterations: usize,
    /// Responses sampled per iteration (RLOO: a multiple of `rloo_k`).
    pub rollouts: usize,
    /// Responses per optimizer step.
    pub minibatch: usize,
    /// Passes over each iteration's responses.
    pub ppo_epochs: usize,
    /// Tokens per response (fixed length; tokens after end-of-text are masked).
    pub response_tokens: usize,
    /// Prompts are cut to at most this many tokens (chat prompts never are).
    pub max_prompt_tokens: usize,
    /// Sampling temperature; log-probabilities are those of the tempered distribution.
    pub temperature: f64,
    /// Initial KL coefficient β.
    pub kl_coef: f64,
    /// Target KL per sequence (nats) of the adaptive controller; `None`: β stays fixed.
    pub kl_target: Option<f64>,
    /// Horizon of the adaptive controller, in episodes.
    pub kl_horizon: f64,
    /// Discount γ of GAE.
    pub gamma: f64,
    /// λ of GAE.
    pub lam: f64,
    /// Clip range ε of the policy ratio.
    pub clip: f64,
    /// Clip range of the value prediction.
    pub clip_value: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Skip a minibatch whose mean ratio exceeds this (TRL's `ratio_threshold`).
    pub ratio_threshold: f64,
    /// RLOO: samples per prompt.
    pub rloo_k: usize,
    /// Normalise scores to mean 0, std 1 under the reference policy before training
    /// (lm-human-preferences), measured on `norm_samples` samples.
    pub normalize_reward: bool,
    /// Samples for the normalisation.
    pub norm_samples: usize,
    /// Optimizer and schedule.
    pub optim: OptimSettings,
    /// Train LoRA adapters (the reference is then the base under them, at no memory cost).
    pub lora: Option<LoraConfig>,
    /// Seed of prompts, samples, minibatch order and initialisation.
    pub seed: u64,
    /// Chat prompts (rendered with a chat template, [`super::ChatFormat`]): the template's
    /// end-of-turn ids, which end a response as EOS does. Such prompts are never cut (each
    /// iteration draws prompts of one length) and the reward reads responses through their
    /// end-of-turn token. `None`: plain-text prompts.
    pub chat_stop: Option<Vec<u32>>,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self::ppo()
    }
}

impl RlConfig {
    /// PPO: β 0.2 adaptive (target 6 nats, horizon 1000), γ 1, λ 0.95, clip 0.2, value clip
    /// 0.2, value weight 0.1, 4 epochs of minibatches of 8 over 32 rollouts of 16 tokens.
    pub fn ppo() -> Self {
        Self {
            algo: Algo::Ppo,
            iterations: 40,
            rollouts: 32,
            minibatch: 8,
            ppo_epochs: 4,
            response_tokens: 16,
            max_prompt_tokens: 8,
            temperature: 1.0,
            kl_coef: 0.2,
            kl_target: Some(6.0),
            kl_horizon: 1000.0,
            gamma: 1.0,
            lam: 0.95,
            clip: 0.2,
            clip_value: 0.2,
            vf_coef: 0.1,
            ratio_threshold: 10.0,
            rloo_k: 4,
            normalize_reward: true,
            norm_samples: 64,
            optim: OptimSettings {
                lr: 1e-4,
                ..OptimSettings::default()
            },
            lora: None,
            seed: 0,
            chat_stop: None,
        }
    }

    /// RLOO: as PPO but k = 4 samples per prompt, β 0.05 (TRL's RLOO default), one epoch.
    pub fn rloo() -> Self {
        Self {
            algo: Algo::Rloo,
            kl_coef: 0.05,
            ppo_epochs: 1,
            ..Self::ppo()
        }
    }

    /// Checks sizes and ranges.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(ArcaneError::InvalidInput(m));
        if self.iterations == 0 || self.rollouts == 0 || self.minibatch == 0 || self.ppo_epochs == 0
        {
            return fail("iterations, rollouts, minibatch and epochs must be at least 1".into());
        }
        if self.response_tokens == 0 {
            return fail("responses need at least 1 token".into());
        }
        if self.algo == Algo::Rloo
            && (self.rloo_k < 2 || !self.rollouts.is_multiple_of(self.rloo_k))
        {
            return fail(format!(
                "RLOO needs k >= 2 samples per prompt and rollouts a multiple of k (k {}, rollouts {})",
                self.rloo_k, self.rollouts
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return fail(format!(
                "the temperature must be positive, got {}",
                self.temperature
            ));
        }
        if !(self.kl_coef >= 0.0 && self.kl_coef.is_finite()) {
            return fail(format!(
                "the KL coefficient must be >= 0, got {}",
                self.kl_coef
            ));
        }
        if matches!(self.kl_target, Some(t) if !(t > 0.0 && t.is_finite()))
            || self.kl_horizon <= 0.0
        {
            return fail("the KL target and horizon must be positive".into());
        }
        if !(self.clip > 0.0 && self.clip_value > 0.0) {
            return fail("clip ranges must be positive".into());
        }
        Ok(())
    }
}
