//! GPT-2 initialisation (Radford et al. 2019, and `_init_weights` in nanoGPT): every weight
//! matrix N(0, 0.02), biases zero, norm gains one. Parameters are created lazily, so a model
//! whose weights are about to be loaded from a checkpoint never pays for its random init.

use burn::module::{Initializer, Param};
use burn::nn::Embedding;
use burn::prelude::*;

use super::linear::Linear;

/// A projection with weight `[d_in, d_out]` drawn from N(0, std²) and a zero bias.
///
/// Burn's own `LinearConfig` draws the bias from the weight initialiser; GPT-2 zeroes it.
pub fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    Linear::new(d_in, d_out, bias, std, device)
}

/// An `Embedding` table `[n, d]` drawn from N(0, std²).
pub fn embedding<B: Backend>(n: usize, d: usize, std: f64, device: &B::Device) -> Embedding<B> {
    Embedding {
        weight: normal([n, d], std, device),
    }
}

/// A lazily initialised parameter drawn from N(0, std²).
pub fn normal<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Initializer::Normal { mean: 0.0, std }.init(shape, device)
}

/// The GPT-2 scaling of residual output projections: `std / sqrt(2 · n_layers)`, because each
/// block adds two branches to the residual stream and its variance would otherwise grow with depth.
pub fn residual_std(std: f64, n_layers: usize) -> f64 {
    std / ((2 * n_layers) as f64).sqrt()
}
