//! One pre-norm transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;

use super::attention::CausalSelfAttention;
use super::config::ModelConfig;
use super::kv_cache::CachedForward;
use super::mlp::Mlp;
use super::norm::Norm;
use super::rope::Rope;

/// A transformer block (GPT-2's `h.i`, Llama's `layers.i`).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention (`ln_1`, `input_layernorm`).
    pub ln1: Norm<B>,
    /// Causal self-attention.
    pub attn: CausalSelfAttention<B>,
    /// Norm before the MLP (`ln_2`, `post_attention_layernorm`).
    pub ln2: Norm<B>,
    /// Feed-forward block.
    pub mlp: Mlp<B>,
    /// Dropout on each residual branch (`resid_pdrop`); identity at inference.
    pub dropout: Dropout,
}

impl<B: Backend> Block<B> {
    /// A freshly initialised block.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let norm = || {
            Norm::new(
                config.norm,
                config.d_model,
                config.norm_eps,
                config.norm_bias,
                device,
            )
        };
        Self {
            ln1: norm(),
            attn: CausalSelfAttention::new(config, device),
            ln2: norm(),
            mlp: Mlp::new(config, device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// # Shapes
    /// - x: `[B, T, C]`
    /// - output: `[B, T, C]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: Option<&Rope<B>>,
        cache: Option<(&mut CachedForward<'_, B>, usize)>,
        start: usize,
    ) -> Tensor<B, 3> {
        let a = self
            .attn
            .forward(self.ln1.forward(x.clone()), rope, cache, start);
        let x = x + self.dropout.forward(a);
        let m = self.mlp.forward(self.ln2.forward(x.clone()));
        x + self.dropout.forward(m)
    }
}
