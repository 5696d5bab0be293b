//! The position-wise feed-forward block: GELU (GPT-2), SwiGLU (Llama) or GeGLU (Gemma).

use burn::prelude::*;
use burn::tensor::activation::gelu;

use super::config::{MlpKind, ModelConfig};
use super::init;
use super::linear::Linear;
use crate::kernels;

/// `proj(act(fc(x)))`, or `proj(act(gate(x)) · fc(x))` when `gate` is present (`act` is silu
/// for SwiGLU, the tanh GELU for GeGLU).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Up projection `[C, F]` (GPT-2 `c_fc`, Llama `up_proj`).
    pub fc: Linear<B>,
    /// Gate projection `[C, F]` of SwiGLU / GeGLU (Llama `gate_proj`); absent for GELU.
    pub gate: Option<Linear<B>>,
    /// Down projection `[F, C]` (GPT-2 `c_proj`, Llama `down_proj`), a residual projection.
    pub proj: Linear<B>,
    /// Exact (erf) GELU instead of the tanh approximation; unused by the gated kinds.
    pub exact_gelu: bool,
    /// The gate goes through the tanh GELU (GeGLU) instead of silu (SwiGLU).
    pub geglu: bool,
}

impl<B: Backend> Mlp<B> {
    /// A freshly initialised MLP.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let (c, f, std) = (config.d_model, config.hidden_size(), config.init_std);
        Self {
            fc: init::linear(c, f, config.bias, std, device),
            gate: config
                .mlp
                .gated()
                .then(|| init::linear(c, f, config.bias, std, device)),
            proj: init::linear(
                f,
                c,
                config.bias,
                init::residual_std(std, config.n_layers),
                device,
            ),
            exact_gelu: config.mlp == MlpKind::Gelu,
            geglu: config.mlp == MlpKind::Geglu,
        }
    }

    /// # Shapes
    /// - x: `[B, T, C]`
    /// - output: `[B, T, C]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = match &self.gate {
            // GeGLU: the fused GELU on the CPU backend, then the product.
            Some(gate) if self.geglu => {
                kernels::gelu_tanh(gate.forward(x.clone())) * self.fc.forward(x)
            }
            // Fused (one pass, one backward node) on the CPU backend.
            Some(gate) => kernels::swiglu(gate.forward(x.clone()), self.fc.forward(x)), // [B, T, F]
            None if self.exact_gelu => gelu(self.fc.forward(x)),
            None => kernels::gelu_tanh(self.fc.forward(x)),
        };
        self.proj.forward(hidden)
    }
}
