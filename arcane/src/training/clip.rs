//! Gradient clipping by the global norm over all parameters, as PyTorch's `clip_grad_norm_`
//! (Pascanu et al. 2013). Burn's `GradientClipping::Norm` clips each tensor on its own.
//!
//! The norm and the clipping coefficient stay on the device ([`clip_global_norm_on_device`]):
//! the training loop reads them back with the loss every few steps instead of stalling the
//! GPU's queue once per step to decide on the host whether to clip.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Scales `grads` so that their global L2 norm is at most `max_norm` (no clipping when
/// `max_norm` is 0) and returns the norm before clipping (read back to the host).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    clip_global_norm_on_device(module, grads, max_norm)
        .into_scalar()
        .elem::<f64>()
}

/// [`clip_global_norm`] without reading anything back: the norm `[1]` stays on the device,
/// and the gradients are multiplied by PyTorch's `min(1, max_norm / (norm + 1e-6))` computed
/// there (a multiplication by exactly 1 when the norm is under the limit).
pub fn clip_global_norm_on_device<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Tensor<B::InnerBackend, 1> {
    let mut squares = SumSquares::<B> { grads, total: None };
    module.visit(&mut squares);
    let Some(total) = squares.total else {
        return Tensor::zeros([1], &Default::default());
    };
    let norm = total.sqrt();
    if max_norm > 0.0 {
        let coef = (norm.clone() + 1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        module.visit(&mut Scale::<B> { grads, coef });
    }
    norm
}

struct SumSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    /// `[1]`, broadcast over each gradient.
    coef: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let coef = self.coef.clone().reshape([1; D]);
            self.grads
                .register::<B::InnerBackend, D>(param.id, g * coef);
        }
    }
}
