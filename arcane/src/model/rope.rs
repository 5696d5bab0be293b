//! Rotary position embedding (RoFormer, Su et al. 2021, arXiv:2104.09864) in the *rotate-half*
//! convention of Hugging Face Llama: dimension `i` is paired with `i + D/2`, not with its
//! neighbour. Burn's `RotaryEncoding` pairs neighbours `(2i, 2i+1)`, which would need the q/k
//! projection rows permuted on every import; implementing rotate-half keeps weights as they are.

use burn::prelude::*;

use super::config::RopeScaling;
use crate::kernels;

/// Precomputed cos/sin tables for positions `0..max_seq_len`. Not a parameter.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// `cos(p · θ_i)` as `[max_seq_len, D]`, the `D/2` frequencies repeated twice.
    cos: Tensor<B, 2>,
    /// `sin(p · θ_i)` with the first half negated, `[max_seq_len, D]`, so that
    /// `rotate_half(x) · sin == swap_halves(x) · sin_signed`.
    sin_signed: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// Tables for a head width `head_dim` (even), base `theta` and optional rescaled
    /// frequencies. A rescaling changes only these tables, not the kernels that apply them.
    pub fn new(
        max_seq_len: usize,
        head_dim: usize,
        theta: f64,
        scaling: Option<&RopeScaling>,
        device: &B::Device,
    ) -> Self {
        assert!(head_dim % 2 == 0, "RoPE needs an even head dimension");
        let half = head_dim / 2;
        // θ_i = theta^(-2i/D), then rescaled; in f64 so long contexts keep their precision.
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| theta.powf(-((2 * i) as f64) / head_dim as f64))
            .map(|f| scaling.map_or(f, |s| s.scale(f)))
            .collect();
        let mut cos = Vec::with_capacity(max_seq_len * head_dim);
        let mut sin = Vec::with_capacity(max_seq_len * head_dim);
        for p in 0..max_seq_len {
            let angles: Vec<f64> = inv_freq.iter().map(|f| p as f64 * f).collect();
            for half_index in 0..2 {
                for a in &angles {
                    cos.push(a.cos() as f32);
                    let s = a.sin() as f32;
                    sin.push(if half_index == 0 { -s } else { s });
                }
            }
        }
        let shape = [max_seq_len, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin_signed: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x` as if its first position were `start`.
    ///
    /// `out = x · cos + rotate_half(x) · sin` with `rotate_half([a, b]) = [-b, a]`.
    ///
    /// # Shapes
    /// - x: `[B, H, T, D]`
    /// - output: `[B, H, T, D]`
    pub fn apply(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        let [_, _, t, _] = x.dims();
        let max = self.cos.dims()[0];
        assert!(
            start + t <= max,
            "RoPE table covers {max} positions, asked for {}",
            start + t
        );
        // Fused on the CPU backend (one pass, one backward node); the tables elsewhere.
        kernels::rope(x, &self.cos, &self.sin_signed, start, |x| {
            self.apply_tables(x, start)
        })
    }

    /// Rotates each token of `x` by its own position (packed rows, whose positions restart at
    /// every example).
    ///
    /// # Shapes
    /// - x: `[B, H, T, D]`; positions: `[B, T]`
    /// - output: `[B, H, T, D]`
    pub fn apply_at(&self, x: Tensor<B, 4>, positions: Tensor<B, 2, Int>) -> Tensor<B, 4> {
        let [b, _, t, d] = x.dims();
        let dtype = x.dtype();
        let flat = positions.reshape([b * t]);
        let table = |tab: &Tensor<B, 2>| {
            tab.clone()
                .select(0, flat.clone())
                .cast(dtype)
                .reshape([b, 1, t, d]) // [B, 1, T, D]
        };
        let (cos, sin) = (table(&self.cos), table(&self.sin_signed));
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let swapped = Tensor::cat(vec![x2, x1], 3);
        x * cos + swapped * sin
    }

    /// `x · cos + swap_halves(x) · sin_signed` in tensor ops.
    fn apply_tables(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        let [_, _, t, d] = x.dims();
        let dtype = x.dtype();
        let cos = self
            .cos
            .clone()
            .narrow(0, start, t)
            .cast(dtype)
            .unsqueeze::<4>(); // [1, 1, T, D]
        let sin = self
            .sin_signed
            .clone()
            .narrow(0, start, t)
            .cast(dtype)
            .unsqueeze::<4>();
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let swapped = Tensor::cat(vec![x2, x1], 3);
        x * cos + swapped * sin
    }
}
