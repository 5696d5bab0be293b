//! The configuration of LoRA adapters (Hu et al. 2021, arXiv:2106.09685): rank, scale,
//! dropout and which projections carry them. Part of the model's description, because a model
//! records the adapters attached to it; attaching, merging and adapter files are in
//! [`crate::lora`].

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use crate::error::{ArcaneError, Result};

/// Which projections get adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// Attention query projection.
    Q,
    /// Attention key projection.
    K,
    /// Attention value projection.
    V,
    /// Attention output projection.
    O,
    /// Every MLP projection (fc, gate, proj).
    Mlp,
    /// The output head (needs an untied head).
    Head,
}

impl LoraTarget {
    /// Every target.
    pub const ALL: [LoraTarget; 6] = [Self::Q, Self::K, Self::V, Self::O, Self::Mlp, Self::Head];
}

impl FromStr for LoraTarget {
    type Err = ArcaneError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "q" => Self::Q,
            "k" => Self::K,
            "v" => Self::V,
            "o" => Self::O,
            "mlp" => Self::Mlp,
            "head" => Self::Head,
            other => {
                return Err(ArcaneError::InvalidInput(format!(
                    "unknown LoRA target {other:?}; choose from q, k, v, o, mlp, head"
                )))
            }
        })
    }
}

/// Rank, scale, dropout and targets of the adapters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Projections that get adapters (the seed's default: query and key).
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec![LoraTarget::Q, LoraTarget::K],
        }
    }
}

impl LoraConfig {
    /// Checks rank, alpha, dropout and targets against the model they will be applied to.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        let fail = |m: String| Err(ArcaneError::InvalidInput(m));
        if self.rank == 0 {
            return fail("the LoRA rank must be at least 1".into());
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return fail(format!("LoRA alpha must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return fail("give at least one LoRA target (q, k, v, o, mlp, head)".into());
        }
        if self.targets.contains(&LoraTarget::Head) && model.tie_embeddings {
            return fail(
                "the head target needs an untied head; this model ties it to the token embedding"
                    .into(),
            );
        }
        if self.rank > model.d_model {
            return fail(format!(
                "LoRA rank {} exceeds the model width {}",
                self.rank, model.d_model
            ));
        }
        Ok(())
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Number of adapter parameters these settings add to a model of `model`'s shape:
    /// `r · (in + out)` per adapted projection.
    pub fn trainable_params(&self, model: &ModelConfig) -> usize {
        let (c, f, q, kv, r) = (
            model.d_model,
            model.hidden_size(),
            model.n_heads * model.head_dim(),
            model.kv_heads() * model.head_dim(),
            self.rank,
        );
        let has = |t| self.targets.contains(&t);
        let mut per_layer = 0;
        for (target, d_in, d_out) in [
            (LoraTarget::Q, c, q),
            (LoraTarget::K, c, kv),
            (LoraTarget::V, c, kv),
            (LoraTarget::O, q, c),
        ] {
            if has(target) {
                per_layer += r * (d_in + d_out);
            }
        }
        if has(LoraTarget::Mlp) {
            let projections = if model.mlp.gated() { 3 } else { 2 };
            per_layer += projections * r * (c + f);
        }
        let head = if has(LoraTarget::Head) && !model.tie_embeddings {
            r * (c + model.vocab_size)
        } else {
            0
        };
        model.n_layers * per_layer + head
    }
}
