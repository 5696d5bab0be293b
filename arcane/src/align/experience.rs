//! One iteration's rollouts with everything PPO or RLOO learns from: the responses, the old
//! policy's log-probabilities and values, the reference's log-probabilities, the scores, and
//! the advantages and returns made of them. Host data, `[N, n]` row-major.

use burn::prelude::*;

use super::advantage::{gae, rloo_advantages, token_rewards, whiten};
use super::logprob::{response_targets, rollout_inputs};

/// Scored rollouts of one iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Experience {
    /// Tokens of every prompt (`k`; the same for all rows).
    pub prompt_len: usize,
    /// The prompts as sampled from (cut to `k` tokens).
    pub prompts: Vec<Vec<u32>>,
    /// The responses, `n` tokens each.
    pub responses: Vec<Vec<u32>>,
    /// Tokens of each response up to and including its first end-of-text.
    pub valid: Vec<usize>,
    /// `[N·n]` log-probabilities under the policy that sampled.
    pub logp: Vec<f32>,
    /// `[N·n]` log-probabilities under the reference.
    pub ref_logp: Vec<f32>,
    /// `[N·n]` values (zeros without a value head).
    pub values: Vec<f32>,
    /// Summed entropy of each response's valid tokens.
    pub entropy: Vec<f64>,
    /// Scores as the reward function gave them.
    pub raw_scores: Vec<f64>,
    /// Scores after normalisation (what the policy is trained on).
    pub scores: Vec<f64>,
    /// PPO: `[N·n]` whitened per-token advantages; RLOO: `[N]` per-sequence advantages.
    pub advantages: Vec<f32>,
    /// PPO: `[N·n]` returns (value targets); RLOO: empty.
    pub returns: Vec<f32>,
}

/// The tensors of a minibatch of rows.
pub(crate) struct Minibatch<B: Backend> {
    pub inputs: Tensor<B, 2, Int>,
    pub targets: Tensor<B, 2, Int>,
    pub mask: Tensor<B, 2>,
    pub old_logp: Tensor<B, 2>,
    pub old_values: Tensor<B, 2>,
    pub advantages: Tensor<B, 2>,
    pub returns: Tensor<B, 2>,
}

impl Experience {
    /// Responses.
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    /// True when there are no responses.
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// Tokens per response `n`.
    pub fn response_len(&self) -> usize {
        self.responses.first().map_or(0, Vec::len)
    }

    /// `log π(y_t) - log π_ref(y_t)` over the valid tokens of `row`.
    pub fn token_kl(&self, row: usize) -> Vec<f64> {
        let n = self.response_len();
        (row * n..row * n + self.valid[row])
            .map(|i| f64::from(self.logp[i]) - f64::from(self.ref_logp[i]))
            .collect()
    }

    /// KL to the reference of each response, `Σ_t (log π - log π_ref)` over its valid tokens
    /// (the sampled estimate of `KL(π ‖ π_ref)` in nats per sequence).
    pub fn kl(&self) -> Vec<f64> {
        (0..self.len())
            .map(|r| self.token_kl(r).iter().sum())
            .collect()
    }

    /// PPO: per-token rewards (KL penalty `β`, score on the last valid token), GAE, and
    /// advantages whitened over every valid token of the batch.
    pub fn compute_ppo_advantages(&mut self, beta: f64, gamma: f64, lam: f64) {
        let n = self.response_len();
        let mut flat_adv = Vec::new();
        self.returns = vec![0.0; self.len() * n];
        let mut per_row = Vec::with_capacity(self.len());
        for row in 0..self.len() {
            let m = self.valid[row];
            let rewards = token_rewards(&self.token_kl(row), beta, self.scores[row]);
            let values: Vec<f64> = self.values[row * n..row * n + m]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let (adv, ret) = gae(&rewards, &values, gamma, lam);
            for (t, r) in ret.iter().enumerate() {
                self.returns[row * n + t] = *r as f32;
            }
            flat_adv.extend_from_slice(&adv);
            per_row.push(m);
        }
        let whitened = whiten(&flat_adv, true);
        self.advantages = vec![0.0; self.len() * n];
        let mut at = 0;
        for (row, m) in per_row.into_iter().enumerate() {
            for t in 0..m {
                self.advantages[row * n + t] = whitened[at] as f32;
                at += 1;
            }
        }
    }

    /// RLOO: sequence rewards `R_i = score_i - β KL_i` and leave-one-out advantages over
    /// groups of `k` consecutive responses (one prompt each).
    pub fn compute_rloo_advantages(&mut self, beta: f64, k: usize) {
        let rewards: Vec<f64> = self
            .scores
            .iter()
            .zip(self.kl())
            .map(|(s, kl)| s - beta * kl)
            .collect();
        self.advantages = rloo_advantages(&rewards, k)
            .into_iter()
            .map(|a| a as f32)
            .collect();
        self.returns.clear();
    }

    /// `1 - Var(R - v) / Var(R)` over the valid tokens (how much of the returns the values
    /// explain; 1 is perfect, 0 no better than a constant).
    pub fn explained_variance(&self) -> f64 {
        let n = self.response_len();
        let (mut ret, mut res) = (Vec::new(), Vec::new());
        for row in 0..self.len() {
            for i in row * n..row * n + self.valid[row] {
                let r = f64::from(*self.returns.get(i).unwrap_or(&0.0));
                ret.push(r);
                res.push(r - f64::from(self.values[i]));
            }
        }
        let var = |x: &[f64]| {
            let m = x.iter().sum::<f64>() / x.len().max(1) as f64;
            x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len().max(1) as f64
        };
        1.0 - var(&res) / var(&ret).max(1e-12)
    }

    /// The tensors of `rows` on `device`; sequence-level advantages (RLOO) come as `[m, 1]`.
    pub(crate) fn minibatch<B: Backend>(
        &self,
        rows: &[usize],
        bos: u32,
        device: &B::Device,
    ) -> Minibatch<B> {
        let n = self.response_len();
        let m = rows.len();
        let pick = |src: &[f32]| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| src[r * n..(r + 1) * n].iter().copied())
                .collect()
        };
        let mask: Vec<f32> = rows
            .iter()
            .flat_map(|&r| (0..n).map(move |t| if t < self.valid[r] { 1.0 } else { 0.0 }))
            .collect();
        let grid = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [m, n]), device);
        let prompts: Vec<Vec<u32>> = rows.iter().map(|&r| self.prompts[r].clone()).collect();
        let responses: Vec<Vec<u32>> = rows.iter().map(|&r| self.responses[r].clone()).collect();
        let per_sequence = self.advantages.len() == self.len();
        let advantages = if per_sequence {
            let a: Vec<f32> = rows.iter().map(|&r| self.advantages[r]).collect();
            Tensor::from_data(TensorData::new(a, [m, 1]), device)
        } else {
            grid(pick(&self.advantages))
        };
        let returns = if self.returns.is_empty() {
            grid(vec![0.0; m * n])
        } else {
            grid(pick(&self.returns))
        };
        Minibatch {
            inputs: rollout_inputs(bos, &prompts, &responses, device),
            targets: response_targets(&responses, device),
            mask: grid(mask),
            old_logp: grid(pick(&self.logp)),
            old_values: grid(pick(&self.values)),
            advantages,
            returns,
        }
    }
}
