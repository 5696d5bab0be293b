//! LayerNorm or RMSNorm (plain, or Gemma's `1 + weight` gain) in one module, with Hugging Face's
//! parameter names (`weight`, `bias`).

use burn::module::{Initializer, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

use super::config::NormKind;
use crate::kernels;

/// A normalisation layer over the last dimension.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    /// Gain `[C]`, initialised to one; with `plus_one`, the offset of the gain from one,
    /// initialised to zero.
    pub weight: Param<Tensor<B, 1>>,
    /// Bias `[C]` (LayerNorm with `norm_bias` only), initialised to zero.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Added to the variance (or mean square) before the square root.
    pub eps: f64,
    /// RMSNorm when true, LayerNorm otherwise.
    pub rms: bool,
    /// The gain is `1 + weight` (Gemma's RMSNorm).
    pub plus_one: bool,
}

impl<B: Backend> Norm<B> {
    /// A fresh norm of width `d` (gain one, bias zero).
    pub fn new(kind: NormKind, d: usize, eps: f64, bias: bool, device: &B::Device) -> Self {
        let rms = kind != NormKind::LayerNorm;
        let plus_one = kind == NormKind::RmsNormPlusOne;
        let gain = if plus_one {
            Initializer::Zeros
        } else {
            Initializer::Ones
        };
        Self {
            weight: gain.init([d], device),
            bias: (bias && !rms).then(|| Initializer::Zeros.init([d], device)),
            eps,
            rms,
            plus_one,
        }
    }

    /// LayerNorm: `(x - mean) / sqrt(var + eps) · w + b` with the biased variance, as
    /// `torch.nn.LayerNorm`; RMSNorm: `x / sqrt(mean(x²) + eps) · w`, as `LlamaRMSNorm`, or
    /// `· (1 + w)` with `plus_one`, as `GemmaRMSNorm` (the sum formed in f32, as there).
    /// Statistics in f32 whatever the dtype of `x`; the output has the dtype of `x`. One fused
    /// pass (and one backward node) on the CPU backend.
    ///
    /// # Shapes
    /// - x: `[..., C]`
    /// - output: `[..., C]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let bias = self.bias.as_ref().map(|b| b.val());
        let x = x.cast(FloatDType::F32);
        let weight = match self.plus_one {
            true => self.weight.val().add_scalar(1.0),
            false => self.weight.val(),
        };
        kernels::norm(x, weight, bias, self.eps, self.rms).cast(dtype)
    }
}
