//! The forward pass over packed rows: several examples laid one after another in a row, each
//! attending only to itself (a block-diagonal causal mask) with positions that restart at 0
//! for every example. The logits of each example are then those it has alone (up to float
//! summation order); no example attends to another.
//!
//! This is the generic path, composed of Burn tensor ops with an explicit `[B, 1, T, T]` mask;
//! the fused causal-attention kernel has no mask input, so packed batches never use it.

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::attention::CausalSelfAttention;
use super::block::Block;
use super::gpt::Gpt;
use super::rope::Rope;
use crate::kernels;

/// Where each token of a packed batch sits: its position inside its example, and which
/// tokens it may attend to.
#[derive(Clone, Debug)]
pub struct Packing<B: Backend> {
    /// `[B, T]` position of each token within its own example (0 at each example's start).
    pub positions: Tensor<B, 2, Int>,
    /// `[B, 1, T, T]` true where query `i` must not see key `j`: another example, or later.
    pub mask: Tensor<B, 4, Bool>,
}

impl<B: Backend> Packing<B> {
    /// The packing of rows whose tokens belong to examples `segments[b][i]` (examples are
    /// contiguous runs of one id; padding gets its own id per token, e.g. `-1 - i`).
    pub fn from_segments(segments: &[Vec<i64>], device: &B::Device) -> Self {
        let b = segments.len();
        let t = segments.first().map_or(0, Vec::len);
        let mut positions = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t * t);
        for row in segments {
            let mut p = 0i64;
            for (i, s) in row.iter().enumerate() {
                p = if i > 0 && row[i - 1] == *s { p + 1 } else { 0 };
                positions.push(p);
            }
            for i in 0..t {
                for j in 0..t {
                    mask.push(!(j <= i && row[j] == row[i]));
                }
            }
        }
        Self {
            positions: Tensor::from_data(TensorData::new(positions, [b, t]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, 1, t, t]), device),
        }
    }

    /// The packing on `device`.
    pub fn to_device(self, device: &B::Device) -> Self {
        Self {
            positions: self.positions.to_device(device),
            mask: self.mask.to_device(device),
        }
    }
}

impl<B: Backend> Gpt<B> {
    /// The final hidden states of packed rows (see the module docs).
    ///
    /// # Shapes
    /// - tokens: `[B, T]` with `T <= max_seq_len`
    /// - output: `[B, T, C]`
    pub fn forward_packed(&self, tokens: Tensor<B, 2, Int>, packing: &Packing<B>) -> Tensor<B, 3> {
        let positions = packing.positions.clone();
        let mut x = kernels::recompute::stem(self, self.config.dropout > 0.0, move |model| {
            model.embed(tokens.clone(), || positions.clone())
        }); // [B, T, C]
        for block in &self.blocks {
            let (rope, packing) = (self.rope.clone(), packing.clone());
            x = kernels::recompute::block(block, x, self.blocks_draw(), move |block, x| {
                block.forward_packed(x, rope.as_ref(), &packing)
            });
        }
        self.ln_f.forward(x)
    }
}

impl<B: Backend> Block<B> {
    /// [`Block::forward`] over packed rows.
    ///
    /// # Shapes
    /// - x: `[B, T, C]`
    /// - output: `[B, T, C]`
    pub fn forward_packed(
        &self,
        x: Tensor<B, 3>,
        rope: Option<&Rope<B>>,
        packing: &Packing<B>,
    ) -> Tensor<B, 3> {
        let a = self
            .attn
            .forward_packed(self.ln1.forward(x.clone()), rope, packing);
        let x = x + self.dropout.forward(a);
        let m = self.mlp.forward(self.ln2.forward(x.clone()));
        x + self.dropout.forward(m)
    }
}

impl<B: Backend> CausalSelfAttention<B> {
    /// Attention over packed rows: RoPE at each token's own position, then softmax over the
    /// keys of its own example up to itself.
    ///
    /// # Shapes
    /// - x: `[B, T, C]`
    /// - output: `[B, T, C]`
    pub fn forward_packed(
        &self,
        x: Tensor<B, 3>,
        rope: Option<&Rope<B>>,
        packing: &Packing<B>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, hkv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let (mut q, mut k, mut v) = self.project(x); // [B, H, T, D], [B, Hkv, T, D] x 2
        if let Some(rope) = rope {
            q = rope.apply_at(q, packing.positions.clone());
            k = rope.apply_at(k, packing.positions.clone());
        }
        if hkv != h {
            // Grouped-query attention: each key/value head serves H / Hkv query heads.
            let repeat = |y: Tensor<B, 4>| {
                y.unsqueeze_dim::<5>(2)
                    .expand([b, hkv, h / hkv, t, d])
                    .reshape([b, h, t, d])
            };
            (k, v) = (repeat(k), repeat(v));
        }
        let mut mask = packing.mask.clone(); // [B, 1, T, T]
        if let Some(w) = self.window {
            // Sliding window: query i also misses keys j with i - j >= W. Examples are
            // contiguous, so within one this is the distance of their own positions.
            let device = mask.device();
            let i = Tensor::<B, 1, Int>::arange(0..t as i64, &device);
            let far = i.clone().reshape([t, 1]) - i.reshape([1, t]); // [T, T]: i - j
            let far = far.greater_equal_elem(w as i64).reshape([1, 1, t, t]);
            mask = mask.bool_or(far.expand([b, 1, t, t]));
        }
        let mask = mask.expand([b, h, t, t]);
        let y = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default());
        let y = y.swap_dims(1, 2).reshape([b, t, h * d]); // [B, T, C]
        self.o.forward(y)
    }
}
