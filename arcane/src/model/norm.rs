//! LayerNorm or RMSNorm in one module, with Hugging Face's parameter names (`weight`, `bias`).

use burn::module::{Initializer, Param};
use burn::prelude::*;
use burn::tensor::{FloatDType, TensorPrimitive};

use super::config::NormKind;

/// A normalisation layer over the last dimension.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    /// Gain `[C]`, initialised to one.
    pub weight: Param<Tensor<B, 1>>,
    /// Bias `[C]` (LayerNorm with `norm_bias` only), initialised to zero.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Added to the variance (or mean square) before the square root.
    pub eps: f64,
    /// RMSNorm when true, LayerNorm otherwise.
    pub rms: bool,
}

impl<B: Backend> Norm<B> {
    /// A fresh norm of width `d` (gain one, bias zero).
    pub fn new(kind: NormKind, d: usize, eps: f64, bias: bool, device: &B::Device) -> Self {
        let rms = kind == NormKind::RmsNorm;
        Self {
            weight: Initializer::Ones.init([d], device),
            bias: (bias && !rms).then(|| Initializer::Zeros.init([d], device)),
            eps,
            rms,
        }
    }

    /// Statistics in f32 whatever the dtype of `x`; the output has the dtype of `x`.
    ///
    /// # Shapes
    /// - x: `[..., C]`
    /// - output: `[..., C]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        self.forward_f32(x.cast(FloatDType::F32)).cast(dtype)
    }

    fn forward_f32<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if self.rms {
            // x / sqrt(mean(x²) + eps) · g, as `LlamaRMSNorm` (statistics in f32).
            let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
            (x / rms) * self.weight.val().unsqueeze()
        } else {
            // The backend's fused LayerNorm (biased variance, as torch.nn.LayerNorm).
            let weight = self.weight.val().into_primitive().tensor();
            let bias = self
                .bias
                .as_ref()
                .map(|b| b.val().into_primitive().tensor());
            Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
                x.into_primitive().tensor(),
                weight,
                bias,
                self.eps,
            )))
        }
    }
}
