//! Direct Preference Optimization losses (Rafailov et al. 2023, arXiv:2305.18290), as TRL's
//! `DPOTrainer` computes them. With the log-ratio difference
//!
//! `h = [log π(y_w) - log π_ref(y_w)] - [log π(y_l) - log π_ref(y_l)]`:
//!
//! - `sigmoid`: `-(1-ε) log σ(βh) - ε log σ(-βh)`; ε is the label smoothing of conservative
//!   DPO (Mitchell 2023), 0 gives the paper's loss;
//! - `ipo` (Azar et al. 2023, arXiv:2310.12036): `(h - 1/(2β))²`, with `h` from per-token mean
//!   log-probabilities (TRL's length normalisation);
//! - `hinge` (SLiC, Zhao et al. 2023): `max(0, 1 - βh)`.
//!
//! The implicit rewards are `β(log π - log π_ref)` of each side; TRL logs them as
//! `rewards/chosen`, `rewards/rejected`, their difference `rewards/margins` and
//! `rewards/accuracies` (chosen above rejected).

use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, relu};
use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};

/// Which DPO loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLossKind {
    /// The paper's loss, with optional label smoothing.
    Sigmoid,
    /// Identity preference optimisation.
    Ipo,
    /// SLiC's hinge loss.
    Hinge,
}

impl DpoLossKind {
    /// Whether the loss reads per-token mean log-probabilities (IPO) instead of sums.
    pub fn length_normalized(self) -> bool {
        self == Self::Ipo
    }
}

impl FromStr for DpoLossKind {
    type Err = ArcaneError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sigmoid" => Ok(Self::Sigmoid),
            "ipo" => Ok(Self::Ipo),
            "hinge" => Ok(Self::Hinge),
            other => Err(ArcaneError::InvalidInput(format!(
                "unknown DPO loss {other:?}; choose sigmoid, ipo or hinge"
            ))),
        }
    }
}

/// Batch means of TRL's DPO metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DpoStats {
    /// Pairs.
    pub n: usize,
    /// The loss.
    pub loss: f64,
    /// `rewards/chosen`: mean `β(log π(y_w) - log π_ref(y_w))`.
    pub rewards_chosen: f64,
    /// `rewards/rejected`.
    pub rewards_rejected: f64,
    /// `rewards/margins`: mean of chosen minus rejected reward.
    pub margins: f64,
    /// `rewards/accuracies`: fraction of pairs whose chosen reward is higher.
    pub accuracies: f64,
    /// `logps/chosen`: mean policy log-probability of the chosen completions.
    pub logps_chosen: f64,
    /// `logps/rejected`.
    pub logps_rejected: f64,
}

impl DpoStats {
    /// The metrics of policy and reference log-probabilities (host values) with loss `loss`.
    pub fn of(
        pi_w: &[f32],
        pi_l: &[f32],
        ref_w: &[f32],
        ref_l: &[f32],
        beta: f64,
        loss: f64,
    ) -> Self {
        let n = pi_w.len();
        let mean = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>() / n.max(1) as f64;
        let rw = |i: usize| beta * (f64::from(pi_w[i]) - f64::from(ref_w[i]));
        let rl = |i: usize| beta * (f64::from(pi_l[i]) - f64::from(ref_l[i]));
        Self {
            n,
            loss,
            rewards_chosen: mean(&rw),
            rewards_rejected: mean(&rl),
            margins: mean(&|i| rw(i) - rl(i)),
            accuracies: mean(&|i| f64::from(u8::from(rw(i) > rl(i)))),
            logps_chosen: mean(&|i| f64::from(pi_w[i])),
            logps_rejected: mean(&|i| f64::from(pi_l[i])),
        }
    }

    /// `(name, value)` under TRL's metric names, with `prefix` ("" or "eval/").
    pub fn named(&self, prefix: &str) -> Vec<(String, f64)> {
        [
            ("loss", self.loss),
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/margins", self.margins),
            ("rewards/accuracies", self.accuracies),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }
}

/// The DPO loss of a batch of pairs, averaged over the pairs.
///
/// # Shapes
/// - pi_w, pi_l, ref_w, ref_l: `[P]` sequence log-probabilities (means for IPO)
/// - output: `[1]`
pub fn dpo_loss<B: Backend>(
    pi_w: Tensor<B, 1>,
    pi_l: Tensor<B, 1>,
    ref_w: Tensor<B, 1>,
    ref_l: Tensor<B, 1>,
    beta: f64,
    kind: DpoLossKind,
    label_smoothing: f64,
) -> Tensor<B, 1> {
    let h = (pi_w - ref_w) - (pi_l - ref_l);
    match kind {
        DpoLossKind::Sigmoid => {
            let eps = label_smoothing;
            let pos = log_sigmoid(h.clone() * beta) * (-(1.0 - eps));
            if eps > 0.0 {
                (pos - log_sigmoid(h * (-beta)) * eps).mean()
            } else {
                pos.mean()
            }
        }
        DpoLossKind::Ipo => (h - 1.0 / (2.0 * beta)).square().mean(),
        DpoLossKind::Hinge => relu((h * beta).neg() + 1.0).mean(),
    }
}
