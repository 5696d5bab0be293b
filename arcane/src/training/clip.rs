//! Gradient clipping by the global norm over all parameters, as PyTorch's `clip_grad_norm_`
//! (Pascanu et al. 2013). Burn's `GradientClipping::Norm` clips each tensor on its own.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Scales `grads` so that their global L2 norm is at most `max_norm` (no clipping when
/// `max_norm` is 0) and returns the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let mut squares = SumSquares::<B> { grads, total: None };
    module.visit(&mut squares);
    let norm = squares
        .total
        .map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt());
    // PyTorch: clip_coef = max_norm / (total_norm + 1e-6), applied when below 1.
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        module.visit(&mut Scale::<B> {
            grads,
            coef,
            _b: std::marker::PhantomData,
        });
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

struct Scale<'a, B> {
    grads: &'a mut GradientsParams,
    coef: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g * self.coef);
        }
    }
}
