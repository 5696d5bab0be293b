//! The PPO and RLOO loop. Each iteration samples responses from the current policy with the
//! KV cache, scores them, turns scores and KL penalties into advantages ([`Experience`]), and
//! then takes several passes of minibatch updates (PPO) or one (RLOO), after which the
//! adaptive KL controller moves β towards its target.
//!
//! The policy trains on the autodiff backend; the reference (the policy's base, adapters
//! off, or a frozen copy under full fine-tuning) and the sampling copy live on the inner
//! backend without a graph. Old log-probabilities and values come from a forward pass on the
//! same code path as training, not from the sampling logits, so the first minibatch's ratio
//! is exactly 1.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::advantage::AdaptiveKl;
use super::batch::check_ids;
use super::experience::Experience;
use super::logprob::{response_logprobs, response_targets, rollout_inputs, token_entropy};
use super::optim::Updater;
use super::policy::{policy_loss, value_loss, PolicyLossStats, PolicyValue, ValueLossStats};
use super::reward::RewardFn;
use super::rl_config::{Algo, RlConfig};
use super::rl_stats::{IterationStats, StatsSum};
use super::rollout::{generate_batch, row_seed, RolloutConfig};
use crate::error::{ArcaneError, Result};
use crate::model::Gpt;

/// Draw index of the samples that normalise the reward (never an iteration's).
const NORM_DRAW: u64 = u64::MAX;

/// A PPO or RLOO run in progress.
pub struct RlTrainer<B: AutodiffBackend> {
    model: PolicyValue<B>,
    reference: Gpt<B::InnerBackend>,
    updater: Updater<PolicyValue<B>, B>,
    kl: AdaptiveKl,
    config: RlConfig,
    rollout: RolloutConfig,
    prompts: Vec<Vec<u32>>,
    iteration: usize,
    reward_norm: (f64, f64),
}

impl<B: AutodiffBackend> RlTrainer<B> {
    /// Sets up a run on `policy` (consumed; LoRA adapters are attached when the config asks)
    /// with tokenised `prompts` (without BOS).
    pub fn new(policy: Gpt<B>, prompts: Vec<Vec<u32>>, config: RlConfig) -> Result<Self> {
        config.validate()?;
        if prompts.is_empty() {
            return Err(ArcaneError::InvalidInput(
                "no prompts to sample from".into(),
            ));
        }
        let mut rollout =
            RolloutConfig::for_model(policy.config(), config.response_tokens, config.temperature);
        if let Some(stop) = &config.chat_stop {
            rollout = rollout.with_chat_stop(stop);
        }
        for p in &prompts {
            check_ids(p, rollout.vocab_limit, "a prompt")?;
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let longest = match rollout.chat {
            true => longest,
            false => longest.min(config.max_prompt_tokens),
        };
        let ctx = policy.config().max_seq_len;
        if 1 + longest + config.response_tokens > ctx {
            return Err(ArcaneError::ContextTooLong {
                what: "BOS + prompt + response".into(),
                len: 1 + longest + config.response_tokens,
                max_seq_len: ctx,
                hint: "lower --response-tokens or --max-prompt-tokens".into(),
            });
        }
        let device = policy.device();
        B::seed(&device, config.seed);
        let (policy, reference) = match &config.lora {
            Some(lora) => {
                let policy = crate::lora::apply_lora(policy, lora)?;
                let reference = crate::lora::without_adapters(policy.valid());
                (policy, reference)
            }
            None => {
                let reference = policy.valid();
                (policy, reference)
            }
        };
        let model = PolicyValue::new(policy, config.algo == Algo::Ppo);
        let per_iteration = config.ppo_epochs * config.rollouts.div_ceil(config.minibatch);
        let updater = Updater::new(&config.optim, config.iterations * per_iteration, &model);
        let kl = AdaptiveKl {
            value: config.kl_coef,
            target: config.kl_target,
            horizon: config.kl_horizon,
        };
        Ok(Self {
            model,
            reference,
            updater,
            kl,
            config,
            rollout,
            prompts,
            iteration: 0,
            reward_norm: (0.0, 1.0),
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &RlConfig {
        &self.config
    }

    /// How responses are sampled.
    pub fn rollout_config(&self) -> &RolloutConfig {
        &self.rollout
    }

    /// The policy and value head being trained.
    pub fn model(&self) -> &PolicyValue<B> {
        &self.model
    }

    /// The frozen reference policy.
    pub fn reference(&self) -> &Gpt<B::InnerBackend> {
        &self.reference
    }

    /// The current KL coefficient β.
    pub fn kl_coef(&self) -> f64 {
        self.kl.value
    }

    /// Iterations completed.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// `(mean, std)` that scores are normalised with (`(0, 1)` until measured).
    pub fn reward_normalization(&self) -> (f64, f64) {
        self.reward_norm
    }

    /// The trained policy (with its adapters under LoRA).
    pub fn into_policy(self) -> Gpt<B> {
        self.model.policy
    }

    /// Measures the mean and standard deviation of `reward` on `norm_samples` responses of
    /// the reference, and normalises every later score with them (lm-human-preferences: the
    /// reward is mean 0, std 1 under the reference, so β means the same for any reward).
    pub fn normalize_reward(&mut self, reward: &mut dyn RewardFn) -> Result<(f64, f64)> {
        let mut raw = Vec::new();
        let mut draw = 0u64;
        while raw.len() < self.config.norm_samples.max(2) {
            let prompts = self.draw_prompts(NORM_DRAW - draw, self.config.rollouts);
            let seeds: Vec<u64> = (0..prompts.len() as u64)
                .map(|r| row_seed(self.config.seed, NORM_DRAW - draw, r))
                .collect();
            let responses = generate_batch(&self.reference, &prompts, &self.rollout, &seeds)?;
            raw.extend(self.score(reward, &prompts, &responses)?);
            draw += 1;
        }
        let n = raw.len() as f64;
        let mean = raw.iter().sum::<f64>() / n;
        let std = (raw.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        self.reward_norm = (mean, std.max(1e-6));
        Ok(self.reward_norm)
    }

    /// `count` prompts drawn (with replacement) for draw `draw`, cut to one length; RLOO
    /// repeats each of `count / k` prompts `k` times in a row. Chat prompts are not cut: the
    /// first draw fixes the length, the others are drawn among the prompts of that length
    /// (as TRL's `LengthSampler` draws one length per batch).
    fn draw_prompts(&self, draw: u64, count: usize) -> Vec<Vec<u32>> {
        let mut rng = StdRng::seed_from_u64(row_seed(self.config.seed, draw, u64::MAX));
        let repeat = if self.config.algo == Algo::Rloo {
            self.config.rloo_k
        } else {
            1
        };
        let first = rng.random_range(0..self.prompts.len());
        let pool: Vec<usize> = match self.rollout.chat {
            true => (0..self.prompts.len())
                .filter(|&i| self.prompts[i].len() == self.prompts[first].len())
                .collect(),
            false => (0..self.prompts.len()).collect(),
        };
        let picks: Vec<usize> = std::iter::once(first)
            .chain((1..count.div_ceil(repeat)).map(|_| pool[rng.random_range(0..pool.len())]))
            .collect();
        let cut = match self.rollout.chat {
            true => usize::MAX,
            false => self.config.max_prompt_tokens,
        };
        let k = picks
            .iter()
            .map(|&i| self.prompts[i].len())
            .min()
            .unwrap_or(0)
            .min(cut);
        picks
            .iter()
            .flat_map(|&i| std::iter::repeat_n(self.prompts[i][..k].to_vec(), repeat))
            .take(count)
            .collect()
    }

    /// Scores responses (what [`RolloutConfig::reward_part`] keeps), refusing non-finite
    /// scores.
    fn score(
        &self,
        reward: &mut dyn RewardFn,
        prompts: &[Vec<u32>],
        responses: &[Vec<u32>],
    ) -> Result<Vec<f64>> {
        let texts: Vec<Vec<u32>> = responses
            .iter()
            .map(|r| self.rollout.reward_part(r).to_vec())
            .collect();
        let scores = reward.score(prompts, &texts)?;
        if scores.len() != responses.len() {
            return Err(ArcaneError::InvalidInput(format!(
                "the reward function gave {} scores for {} responses",
                scores.len(),
                responses.len()
            )));
        }
        match scores.iter().position(|s| !s.is_finite()) {
            Some(i) => Err(ArcaneError::InvalidInput(format!(
                "the reward of sample {i} is {}; the run stopped before using it",
                scores[i]
            ))),
            None => Ok(scores.into_iter().map(f64::from).collect()),
        }
    }

    /// Samples this iteration's responses and scores them: the experience to learn from.
    pub fn collect(&self, reward: &mut dyn RewardFn) -> Result<Experience> {
        let draw = self.iteration as u64;
        let prompts = self.draw_prompts(draw, self.config.rollouts);
        let seeds: Vec<u64> = (0..prompts.len() as u64)
            .map(|r| row_seed(self.config.seed, draw, r))
            .collect();
        let sampler = self.model.valid();
        let responses = generate_batch(&sampler.policy, &prompts, &self.rollout, &seeds)?;
        let (bos, temp, limit) = (
            self.rollout.bos,
            self.rollout.temperature,
            self.rollout.vocab_limit,
        );
        let k = prompts[0].len();
        let (mut logp, mut ref_logp, mut values, mut entropy) = (vec![], vec![], vec![], vec![]);
        let device = self.reference.device();
        for (p, r) in prompts
            .chunks(self.config.minibatch)
            .zip(responses.chunks(self.config.minibatch))
        {
            let inputs = rollout_inputs::<B::InnerBackend>(bos, p, r, &device);
            let targets = response_targets::<B::InnerBackend>(r, &device);
            let out = sampler.forward_responses(inputs.clone(), targets.clone(), k, temp, limit);
            let reference = response_logprobs(&self.reference, inputs, targets, k, temp, limit);
            logp.extend(to_vec(out.logp));
            ref_logp.extend(to_vec(reference));
            entropy.extend(to_vec(token_entropy(out.logits, temp, limit)));
            values.extend(match out.values {
                Some(v) => to_vec(v),
                None => vec![0.0; r.len() * self.config.response_tokens],
            });
        }
        let raw_scores = self.score(&mut *reward, &prompts, &responses)?;
        let (mean, std) = self.reward_norm;
        let n = self.config.response_tokens;
        let valid: Vec<usize> = responses
            .iter()
            .map(|r| self.rollout.valid_len(r))
            .collect();
        let entropy = valid
            .iter()
            .enumerate()
            .map(|(row, &m)| {
                entropy[row * n..row * n + m]
                    .iter()
                    .map(|&e| f64::from(e))
                    .sum()
            })
            .collect();
        let mut exp = Experience {
            prompt_len: k,
            scores: raw_scores.iter().map(|s| (s - mean) / std).collect(),
            raw_scores,
            prompts,
            responses,
            valid,
            logp,
            ref_logp,
            values,
            entropy,
            advantages: vec![],
            returns: vec![],
        };
        match self.config.algo {
            Algo::Ppo => {
                exp.compute_ppo_advantages(self.kl.value, self.config.gamma, self.config.lam)
            }
            Algo::Rloo => exp.compute_rloo_advantages(self.kl.value, self.config.rloo_k),
        }
        Ok(exp)
    }

    /// The loss of one minibatch of `exp`'s rows under the current policy.
    fn minibatch_loss(
        &self,
        exp: &Experience,
        rows: &[usize],
    ) -> (Tensor<B, 1>, PolicyLossStats, ValueLossStats) {
        let c = &self.config;
        let t = exp.minibatch::<B>(rows, self.rollout.bos, &self.model.policy.device());
        let out = self.model.forward_responses(
            t.inputs,
            t.targets,
            exp.prompt_len,
            c.temperature,
            self.rollout.vocab_limit,
        );
        match c.algo {
            Algo::Ppo => {
                let (pg, ps) =
                    policy_loss(out.logp, t.old_logp, t.advantages, t.mask.clone(), c.clip);
                let values = out.values.expect("PPO has a value head");
                let (vf, vs) = value_loss(values, t.old_values, t.returns, t.mask, c.clip_value);
                (pg + vf * c.vf_coef, ps, vs)
            }
            Algo::Rloo => {
                // REINFORCE on whole sequences: the ratio of sequence probabilities, clipped.
                let seq = (out.logp * t.mask.clone()).sum_dim(1); // [m, 1]
                let old = (t.old_logp * t.mask).sum_dim(1);
                let ones = Tensor::ones([rows.len(), 1], &seq.device());
                let (pg, ps) = policy_loss(seq, old, t.advantages, ones, c.clip);
                (pg, ps, ValueLossStats::default())
            }
        }
    }

    /// Learns from `exp`: `ppo_epochs` passes of shuffled minibatches, then the KL controller
    /// update. Returns the iteration's figures.
    pub fn train_on(&mut self, exp: &Experience) -> Result<IterationStats> {
        let mut rng = StdRng::seed_from_u64(row_seed(
            self.config.seed,
            self.iteration as u64,
            u64::MAX - 1,
        ));
        let mut sums = StatsSum::default();
        for _ in 0..self.config.ppo_epochs {
            let mut rows: Vec<usize> = (0..exp.len()).collect();
            rows.shuffle(&mut rng);
            for mb in rows.chunks(self.config.minibatch) {
                let (loss, ps, vs) = self.minibatch_loss(exp, mb);
                sums.first.get_or_insert(ps);
                if ps.ratio_mean > self.config.ratio_threshold {
                    sums.skipped += 1;
                    continue;
                }
                let (model, report) = self.updater.step(self.model.clone(), loss)?;
                self.model = model;
                sums.add(&ps, &vs, &report);
            }
        }
        let beta = self.kl.value;
        let kl = exp.kl();
        self.kl
            .update(kl.iter().sum::<f64>() / kl.len().max(1) as f64, exp.len());
        self.iteration += 1;
        Ok(IterationStats::new(self.iteration, exp, &sums, beta))
    }

    /// One iteration: [`Self::collect`], then [`Self::train_on`].
    pub fn step(&mut self, reward: &mut dyn RewardFn) -> Result<(IterationStats, Experience)> {
        let exp = self.collect(reward)?;
        let stats = self.train_on(&exp)?;
        Ok((stats, exp))
    }
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 values")
}
