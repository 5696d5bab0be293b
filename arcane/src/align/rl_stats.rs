//! The figures of a PPO or RLOO iteration, under the metric names of TRL v0.7's PPOTrainer.

use super::experience::Experience;
use super::optim::StepReport;
use super::policy::{PolicyLossStats, ValueLossStats};

/// Sums over the minibatches of an iteration.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatsSum {
    /// Stats of the first minibatch, before any update of the iteration.
    pub first: Option<PolicyLossStats>,
    pub policy: PolicyLossStats,
    pub value: ValueLossStats,
    pub total_loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub steps: usize,
    pub skipped: usize,
}

impl StatsSum {
    pub fn add(&mut self, p: &PolicyLossStats, v: &ValueLossStats, report: &StepReport) {
        self.policy.loss += p.loss;
        self.policy.clipfrac += p.clipfrac;
        self.policy.approxkl += p.approxkl;
        self.policy.policykl += p.policykl;
        self.policy.ratio_mean += p.ratio_mean;
        self.value.loss += v.loss;
        self.value.clipfrac += v.clipfrac;
        self.value.mean += v.mean;
        self.total_loss += report.loss;
        self.grad_norm += report.grad_norm;
        self.lr = report.lr;
        self.steps += 1;
    }
}

/// What an iteration measured.
#[derive(Clone, Debug, PartialEq)]
pub struct IterationStats {
    /// Iterations completed, this one included.
    pub iteration: usize,
    /// Mean raw score of the iteration's samples (`env/reward_mean`).
    pub reward_mean: f64,
    /// Their standard deviation (`env/reward_std`).
    pub reward_std: f64,
    /// Mean normalised score, the one trained on.
    pub score_mean: f64,
    /// Mean KL to the reference per sequence, nats (`objective/kl`).
    pub kl: f64,
    /// β used for this iteration's rewards (`objective/kl_coef`).
    pub kl_coef: f64,
    /// Mean summed entropy per sequence (`objective/entropy`).
    pub entropy: f64,
    /// Mean policy-loss figures over the applied minibatches.
    pub policy: PolicyLossStats,
    /// Mean value-loss figures (zero for RLOO).
    pub value: ValueLossStats,
    /// Figures of the first minibatch, before any update of this iteration (its ratio is 1).
    pub first_minibatch: PolicyLossStats,
    /// Mean total loss.
    pub total_loss: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Minibatches skipped for a ratio above the threshold.
    pub skipped: usize,
    /// Mean return over valid tokens (PPO).
    pub returns_mean: f64,
    /// Explained variance of the values (PPO).
    pub explained_variance: f64,
}

impl IterationStats {
    pub(crate) fn new(iteration: usize, exp: &Experience, sums: &StatsSum, kl_coef: f64) -> Self {
        let n = exp.len().max(1) as f64;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let reward_mean = mean(&exp.raw_scores);
        let reward_std = (exp
            .raw_scores
            .iter()
            .map(|x| (x - reward_mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let steps = sums.steps.max(1) as f64;
        let avg_p = |x: f64| x / steps;
        let returns: Vec<f64> = exp.returns.iter().map(|&r| f64::from(r)).collect();
        let valid_tokens: usize = exp.valid.iter().sum();
        Self {
            iteration,
            reward_mean,
            reward_std,
            score_mean: mean(&exp.scores),
            kl: mean(&exp.kl()),
            kl_coef,
            entropy: mean(&exp.entropy),
            policy: PolicyLossStats {
                loss: avg_p(sums.policy.loss),
                clipfrac: avg_p(sums.policy.clipfrac),
                approxkl: avg_p(sums.policy.approxkl),
                policykl: avg_p(sums.policy.policykl),
                ratio_mean: avg_p(sums.policy.ratio_mean),
            },
            value: ValueLossStats {
                loss: avg_p(sums.value.loss),
                clipfrac: avg_p(sums.value.clipfrac),
                mean: avg_p(sums.value.mean),
            },
            first_minibatch: sums.first.unwrap_or_default(),
            total_loss: avg_p(sums.total_loss),
            grad_norm: avg_p(sums.grad_norm),
            lr: sums.lr,
            skipped: sums.skipped,
            returns_mean: returns.iter().sum::<f64>() / valid_tokens.max(1) as f64,
            explained_variance: if returns.is_empty() {
                0.0
            } else {
                exp.explained_variance()
            },
        }
    }

    /// `(name, value)` pairs under TRL's names.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("env/reward_mean", self.reward_mean),
            ("env/reward_std", self.reward_std),
            ("env/score_mean", self.score_mean),
            ("objective/kl", self.kl),
            ("objective/kl_coef", self.kl_coef),
            ("objective/entropy", self.entropy),
            ("ppo/loss/policy", self.policy.loss),
            ("ppo/loss/value", self.value.loss),
            ("ppo/loss/total", self.total_loss),
            ("ppo/policy/clipfrac", self.policy.clipfrac),
            ("ppo/policy/approxkl", self.policy.approxkl),
            ("ppo/policy/policykl", self.policy.policykl),
            ("ppo/policy/ratio", self.policy.ratio_mean),
            ("ppo/val/clipfrac", self.value.clipfrac),
            ("ppo/val/mean", self.value.mean),
            ("ppo/val/var_explained", self.explained_variance),
            ("ppo/returns/mean", self.returns_mean),
            ("ppo/learning_rate", self.lr),
            ("ppo/grad_norm", self.grad_norm),
            ("ppo/skipped_minibatches", self.skipped as f64),
        ]
    }
}
