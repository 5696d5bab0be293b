//! Causal multi-head self-attention with grouped-query heads, optional RoPE, optional per-head
//! query/key RMSNorm (Qwen3), an optional sliding window (Mistral, Phi-3) and a KV cache.

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::config::{ModelConfig, NormKind};
use super::init;
use super::kv_cache::{CacheMask, CachedForward};
use super::linear::Linear;
use super::norm::Norm;
use super::rope::Rope;
use crate::kernels::{self, KeyPrefix};

/// Separate q, k, v and output projections (GPT-2's fused `c_attn` is split on import), so that
/// LoRA can target each one and grouped-query attention needs no special layout.
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// Query projection `[C, H·D]`.
    pub q: Linear<B>,
    /// Key projection `[C, Hkv·D]`.
    pub k: Linear<B>,
    /// Value projection `[C, Hkv·D]`.
    pub v: Linear<B>,
    /// Output projection `[H·D, C]`, a residual projection (scaled init).
    pub o: Linear<B>,
    /// RMSNorm `[D]` over each query head before RoPE (Qwen3's `q_norm`), with `qk_norm`.
    pub q_norm: Option<Norm<B>>,
    /// RMSNorm `[D]` over each key head before RoPE (Qwen3's `k_norm`), with `qk_norm`.
    pub k_norm: Option<Norm<B>>,
    /// Query heads `H`.
    pub n_heads: usize,
    /// Key/value heads `Hkv` (divides `H`).
    pub n_kv_heads: usize,
    /// Head width `D`.
    pub head_dim: usize,
    /// Sliding window: each query sees only the last `W` positions, itself included
    /// (Mistral, Phi-3); `None` is full causal attention.
    #[module(skip)]
    pub window: Option<usize>,
}

impl<B: Backend> CausalSelfAttention<B> {
    /// A freshly initialised attention layer.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let (c, d) = (config.d_model, config.head_dim());
        let (h, hkv) = (config.n_heads, config.kv_heads());
        let std = config.init_std;
        let resid_std = init::residual_std(std, config.n_layers);
        let qkv_bias = config.bias || config.qkv_bias;
        let head_norm = || {
            let norm = Norm::new(NormKind::RmsNorm, d, config.norm_eps, false, device);
            config.qk_norm.then_some(norm)
        };
        Self {
            q: init::linear(c, h * d, qkv_bias, std, device),
            k: init::linear(c, hkv * d, qkv_bias, std, device),
            v: init::linear(c, hkv * d, qkv_bias, std, device),
            o: init::linear(h * d, c, config.bias, resid_std, device),
            q_norm: head_norm(),
            k_norm: head_norm(),
            n_heads: h,
            n_kv_heads: hkv,
            head_dim: d,
            window: config.sliding_window,
        }
    }

    /// Attends from the `T` new positions to every earlier one (cached or in `x`).
    ///
    /// `start` is the absolute position of `x`'s first token. With a cache, this layer's keys
    /// and values are written into `cache` at index `layer`; the caller advances the cache.
    ///
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
        let [b, t, _] = x.dims();
        let (h, d) = (self.n_heads, self.head_dim);
        let (mut q, mut k, v) = self.project(x);
        if let Some(rope) = rope {
            q = rope.apply(q, start);
            k = rope.apply(k, start);
        }
        let y = match cache {
            Some((step, layer)) => Self::attend_cached(q, k, v, step, layer),
            None => self.attend_causal(q, k, v),
        }; // [B, H, T, D]
        let y = y.swap_dims(1, 2).reshape([b, t, h * d]); // [B, T, C]
        self.o.forward(y)
    }

    /// The query, key and value heads of `x`: `[B, T, n·D] -> [B, n, T, D]`, normalised per
    /// head first when there is a norm (on the contiguous `[B, T, n, D]` layout, as Qwen3 does
    /// before transposing). Shared by the plain, cached and packed forwards.
    ///
    /// # Shapes
    /// - x: `[B, T, C]`
    /// - output: q `[B, H, T, D]`, k and v `[B, Hkv, T, D]`
    pub(crate) fn project(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t, _] = x.dims();
        let d = self.head_dim;
        let heads = |y: Tensor<B, 3>, n: usize, norm: Option<&Norm<B>>| {
            let y = y.reshape([b, t, n, d]);
            let y = match norm {
                Some(norm) => norm.forward(y),
                None => y,
            };
            y.swap_dims(1, 2)
        };
        let q = heads(
            self.q.forward(x.clone()),
            self.n_heads,
            self.q_norm.as_ref(),
        );
        let k = heads(
            self.k.forward(x.clone()),
            self.n_kv_heads,
            self.k_norm.as_ref(),
        );
        let v = heads(self.v.forward(x), self.n_kv_heads, None);
        (q, k, v)
    }

    /// softmax(q kᵀ / sqrt(D)) v over the same span of positions, causally masked (and to the
    /// sliding window, if any); query head j reads key/value head j / (H / Hkv) (grouped-query
    /// attention). Queries and keys are the same positions, so `is_causal` is exact on every
    /// backend. On the CPU backend this is one fused kernel that reads the heads in place (see
    /// [`kernels::causal_attention`]).
    ///
    /// # Shapes
    /// - q: `[B, H, T, D]`; k, v: `[B, Hkv, T, D]`
    /// - output: `[B, H, T, D]`
    fn attend_causal(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
        kernels::causal_attention(q, k, v, self.window)
    }

    /// Writes the new keys and values into the cache and attends over its buffers with the
    /// forward's mask. The `H / Hkv` query heads that share a key/value head are folded into
    /// the query axis, so grouped-query attention reads the cached keys without copying them
    /// once per query head.
    ///
    /// # Shapes
    /// - q: `[B, H, T, D]`; k, v: `[B, Hkv, T, D]`
    /// - output: `[B, H, T, D]`
    fn attend_cached(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        step: &mut CachedForward<'_, B>,
        layer: usize,
    ) -> Tensor<B, 4> {
        let [b, h, t, d] = q.dims();
        let hkv = k.dims()[1];
        let (k, v) = step.cache.append(layer, k, v); // [B, Hkv, Cap, D]
        let q = q.reshape([b, hkv, (h / hkv) * t, d]); // [B, Hkv, (H/Hkv)·T, D]
                                                       // Row r of the folded queries is token r % T: it sees keys 0..=start + r % T.
        let prefix = match step.mask {
            CacheMask::Causal => KeyPrefix::causal(t),
            CacheMask::Explicit { start, .. } => KeyPrefix {
                start,
                ..KeyPrefix::causal(t)
            },
            // One token that sees every key of the buffer (but those before a window).
            CacheMask::None => KeyPrefix {
                start: k.dims()[2] - 1,
                ..KeyPrefix::causal(1)
            },
        }
        .with_window(step.window.unwrap_or(usize::MAX));
        let mask = step.mask_tensor.clone();
        let y = kernels::prefix_attention(q, k, v, prefix, |q, k, v| {
            let options = AttentionModuleOptions {
                is_causal: step.mask == CacheMask::Causal,
                ..Default::default()
            };
            attention(q, k, v, mask, None, options)
        });
        y.reshape([b, h, t, d])
    }
}
