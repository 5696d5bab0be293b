//! The projection every layer uses: a linear map `y = x·W + b` in Burn's `[in, out]` layout,
//! with a slot for a LoRA adapter (Hu et al. 2021, arXiv:2106.09685) that adds
//! `(alpha / r) · dropout(x)·A·B`. `A` `[in, r]` is drawn as PyTorch's Linear init
//! (Kaiming-uniform, as peft) and `B` `[r, out]` is zero, so a fresh adapter changes nothing.
//! Without an adapter it is a plain linear layer with the parameter names `weight` and `bias`.

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;

use super::adapter::LoraConfig;
use crate::kernels;

/// The trainable low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[in, r]`
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]`, zero at first.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / r`.
    pub scale: f64,
    /// Dropout on the input of the update.
    pub dropout: Dropout,
    /// True once folded into the base weight (the forward then skips it).
    pub merged: bool,
}

impl<B: Backend> LoraAdapter<B> {
    /// `scale · A·B`, the update in the base weight's layout `[in, out]`.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()) * self.scale
    }
}

/// A linear projection `[in, out]` that may carry a LoRA adapter.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// Base weight `[in, out]` (Burn's layout; frozen when an adapter is attached).
    pub weight: Param<Tensor<B, 2>>,
    /// Base bias `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The adapter, if any.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Linear<B> {
    /// A projection with weight N(0, std²) and zero bias, without adapter.
    pub fn new(d_in: usize, d_out: usize, bias: bool, std: f64, device: &B::Device) -> Self {
        Self {
            weight: Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device),
            bias: bias.then(|| Initializer::Zeros.init([d_out], device)),
            lora: None,
        }
    }

    /// Computes in the dtype of `x`: the f32 parameters are cast to it (a no-op in f32; see
    /// [`super::Precision`]). A weight stored in bf16 for inference
    /// ([`super::Gpt::with_bf16_weights`]) meets f32 activations in the CPU backend's bf16
    /// kernels, and is cast to the dtype of `x` elsewhere.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        // One gemm with the bias folded in (matrix-vector products when decoding) on the CPU
        // backend; Burn's `linear` elsewhere. `kernels::linear` casts where it must.
        let base = kernels::linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match &self.lora {
            Some(l) if !l.merged => {
                let update = l
                    .dropout
                    .forward(x)
                    .matmul(l.a.val().cast(dtype).unsqueeze())
                    .matmul(l.b.val().cast(dtype).unsqueeze());
                base + update * l.scale
            }
            _ => base,
        }
    }

    /// Attaches a fresh adapter (`A` Kaiming-uniform, `B` zero): the output is unchanged until
    /// the adapter is trained.
    pub fn with_adapter(mut self, config: &LoraConfig, device: &B::Device) -> Self {
        let [d_in, d_out] = self.weight.lazy_shape().dims();
        let r = config.rank;
        // Kaiming-uniform with a = sqrt(5), PyTorch's Linear init and peft's choice for A:
        // U(-1/sqrt(in), 1/sqrt(in)).
        let kaiming = Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        };
        self.lora = Some(LoraAdapter {
            a: kaiming.init_with([d_in, r], Some(d_in), Some(r), device),
            b: Initializer::Zeros.init([r, d_out], device),
            scale: config.scale(),
            dropout: DropoutConfig::new(config.dropout).init(),
            merged: false,
        });
        self
    }

    /// Folds the adapter into the base weight (`merge`) or takes it out again; a projection
    /// without adapter, or already in that state, is returned as it is.
    pub fn set_merged(mut self, merge: bool) -> Self {
        if let Some(mut l) = self.lora.take() {
            if l.merged != merge {
                let delta = l.delta();
                let w = self.weight.val();
                let w = if merge { w + delta } else { w - delta };
                self.weight = Param::initialized(self.weight.id, w.set_require_grad(false));
                l.merged = merge;
            }
            self.lora = Some(l);
        }
        self
    }
}
