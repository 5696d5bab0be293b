//! Fused operations with fast CPU kernels behind a generic API.
//!
//! The model calls these functions for every backend `B`. When `B` is the CPU backend or
//! `Autodiff` over it (feature `flex`), they run fused kernels: one pass per operation on all
//! cores with AVX-512 or AVX2 chosen at run time, custom backward nodes instead of Burn's
//! decomposed ones, and a cross-entropy that never holds the `[N, V]` logits. Every other
//! backend, and every dtype but `f32`, takes the generic path (`generic.rs`): the same math
//! in Burn tensor ops. See `fused.rs` for the backend traits and `dispatch.rs` for how a
//! generic `B` reaches them.

// Without `flex` (a CUDA-only build) every call takes the generic path: the dispatch helpers
// and the arguments only the fused kernels read are unused there.
#![cfg_attr(not(feature = "flex"), allow(dead_code, unused_variables))]

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod autodiff_nodes;
#[cfg(feature = "flex")]
pub mod cpu;
mod dispatch;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod flex_attention;
mod fused;
mod generic;
mod params;
pub mod recompute;

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

pub use dispatch::generic_only;
#[allow(unused_imports)]
use dispatch::{all_f32, back, to, to_int, with_fused};
pub use fused::{AdamWStep, FusedGrads, FusedOps, HeadLayout, KeyPrefix};

/// LayerNorm, or RMSNorm when `rms`, over the last dimension (statistics in `f32`).
///
/// # Shapes
/// - x: `[..., C]`; weight, bias: `[C]`
/// - output: `[..., C]`
pub fn norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    bias: Option<Tensor<B, 1>>,
    eps: f64,
    rms: bool,
) -> Tensor<B, D> {
    if all_f32(&[x.dtype(), weight.dtype()]) {
        with_fused!(fused, B, |K| {
            let bias = bias.map(to::<K, B, 1>);
            let y = K::fused_norm(to::<K, B, D>(x), to::<K, B, 1>(weight), bias, eps, rms);
            return back::<K, B, D>(y);
        });
    }
    generic::norm(x, weight, bias, eps, rms)
}

/// GPT-2's GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, elementwise.
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if all_f32(&[x.dtype()]) {
        with_fused!(fused, B, |K| {
            return back::<K, B, D>(K::fused_gelu_tanh(to::<K, B, D>(x)));
        });
    }
    generic::gelu_tanh(x)
}

/// SwiGLU's gating, `silu(gate) · up`, elementwise.
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    if all_f32(&[gate.dtype(), up.dtype()]) && gate.dims() == up.dims() {
        with_fused!(fused, B, |K| {
            let y = K::fused_swiglu(to::<K, B, D>(gate), to::<K, B, D>(up));
            return back::<K, B, D>(y);
        });
    }
    generic::swiglu(gate, up)
}

/// Mean next-token cross-entropy of `targets` under the logits `hidden · headᵀ` (the output
/// head fused with the loss). Without fused kernels this is the head's matmul and Burn's
/// `CrossEntropyLoss`.
///
/// # Shapes
/// - hidden: `[N, C]`; weight: `[V, C]` (`VocabMajor`) or `[C, V]` (`ChannelMajor`);
///   targets: `[N]`, each below `V`
/// - output: `[1]`
pub fn linear_cross_entropy<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    layout: HeadLayout,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    if all_f32(&[hidden.dtype(), weight.dtype()]) {
        with_fused!(fused, B, |K| {
            let (h, w) = (to::<K, B, 2>(hidden), to::<K, B, 2>(weight));
            let loss = K::fused_linear_cross_entropy(h, w, layout, to_int::<K, B, 1>(targets));
            return back::<K, B, 1>(loss);
        });
    }
    generic::linear_cross_entropy(hidden, weight, layout, targets)
}

/// Causal self-attention `softmax(q·kᵀ/√D)·v`, query `i` seeing keys `0..=i`, or with a
/// sliding `window` of `W` only `i - W < j <= i` (Mistral, Phi-3); query head `h` reads
/// key/value head `h / (H / Hkv)` (grouped-query attention). On the CPU backend, one
/// FlashAttention-style kernel that reads the heads in place and keeps no `[T, T]` scores for
/// the backward pass; elsewhere the key/value heads are repeated and Burn's `attention` runs
/// with `is_causal` (with an explicit mask for a window).
///
/// # Shapes
/// - q: `[B, H, T, D]`; k, v: `[B, Hkv, T, D]`
/// - output: `[B, H, T, D]`
pub fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    window: Option<usize>,
) -> Tensor<B, 4> {
    if all_f32(&[q.dtype(), k.dtype(), v.dtype()]) {
        with_fused!(fused, B, |K| {
            let scale = 1.0 / (q.dims()[3] as f64).sqrt();
            let (q, k, v) = (to::<K, B, 4>(q), to::<K, B, 4>(k), to::<K, B, 4>(v));
            let window = window.unwrap_or(usize::MAX);
            return back::<K, B, 4>(K::fused_causal_attention(q, k, v, scale, window));
        });
    }
    generic::causal_attention(q, k, v, window)
}

/// Attention of query rows over key prefixes, for decoding and chunked prefill over a KV cache
/// buffer: row `r` of `q` sees keys `0..=start + r % period` (see [`KeyPrefix`]), so no mask
/// tensor is read. On the CPU backend (inference) one kernel reads each cached key and value
/// once per head; elsewhere `generic` runs (the caller's masked attention).
///
/// # Shapes
/// - q: `[B, H, R, D]`; k, v: `[B, Hkv, S, D]` with `H` a multiple of `Hkv`
/// - output: `[B, H, R, D]`
pub fn prefix_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    prefix: KeyPrefix,
    generic: impl FnOnce(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) -> Tensor<B, 4>,
) -> Tensor<B, 4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    if all_f32(&[q.dtype(), k.dtype(), v.dtype()]) {
        with_fused!(inference, B, |K| {
            let (q, k, v) = (to::<K, B, 4>(q), to::<K, B, 4>(k), to::<K, B, 4>(v));
            return back::<K, B, 4>(K::fused_prefix_attention(q, k, v, prefix, scale));
        });
    }
    generic(q, k, v)
}

/// Writes `values` into positions `start..start + T` of a cache buffer: in place on the CPU
/// backend when the buffer is not shared (burn-flex's `slice_assign` copies the whole buffer
/// first, which made every decoded token copy every layer's cache); `slice_assign` elsewhere.
///
/// # Shapes
/// - buffer: `[B, H, S, D]`; values: `[B, H, T, D]`
/// - output: `[B, H, S, D]`
pub fn write_positions<B: Backend>(
    buffer: Tensor<B, 4>,
    start: usize,
    values: Tensor<B, 4>,
) -> Tensor<B, 4> {
    if all_f32(&[buffer.dtype(), values.dtype()]) {
        with_fused!(inference, B, |K| {
            let (buf, vals) = (to::<K, B, 4>(buffer), to::<K, B, 4>(values));
            return back::<K, B, 4>(K::fused_write_positions(buf, start, vals));
        });
    }
    let t = values.dims()[2];
    buffer.slice_assign(burn::tensor::s![.., .., start..start + t], values)
}

/// Rotary embedding of heads at positions `start..start + T` (rotate-half convention) with
/// the tables `cos` and `sin_signed` `[S, D]` (the sines with their first half negated). On
/// the CPU backend one pass that reads the heads in place and writes them where attention
/// reads them, with one backward node; elsewhere `generic` runs.
///
/// # Shapes
/// - x: `[B, H, T, D]`; cos, sin_signed: `[S, D]` with `S >= start + T`
/// - output: `[B, H, T, D]`
pub fn rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 2>,
    sin_signed: &Tensor<B, 2>,
    start: usize,
    generic: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
) -> Tensor<B, 4> {
    if all_f32(&[x.dtype(), cos.dtype(), sin_signed.dtype()]) {
        with_fused!(fused, B, |K| {
            let (c, s) = (
                to::<K, B, 2>(cos.clone()),
                to::<K, B, 2>(sin_signed.clone()),
            );
            return back::<K, B, 4>(K::fused_rope(to::<K, B, 4>(x), c, s, start));
        });
    }
    generic(x)
}

/// The projection `x · W (+ b)` with `W` in Burn's `[in, out]` layout, computed in the dtype
/// of `x` (a weight or bias of another dtype is cast to it). On the CPU backend: one gemm with
/// the bias folded in and one backward node (the gradients as two gemms and column sums), and
/// for a few rows (decoding) a matrix-vector kernel that reads each weight once on every core;
/// f32 activations with a weight stored in bf16 (inference, see `Gpt::with_bf16_weights`)
/// read the bf16 weights directly and accumulate in f32. Elsewhere Burn's `linear`.
///
/// # Shapes
/// - x: `[..., in]`; weight: `[in, out]`; bias: `[out]`
/// - output: `[..., out]`
pub fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let bias_f32 = bias.as_ref().is_none_or(|b| all_f32(&[b.dtype()]));
    if all_f32(&[x.dtype(), weight.dtype()]) && bias_f32 {
        with_fused!(fused, B, |K| {
            return fused_linear::<K, B, D>(x, weight, bias);
        });
    }
    if all_f32(&[x.dtype()]) && weight.dtype() == DType::BF16 && bias_f32 {
        with_fused!(inference, B, |K| {
            return fused_linear::<K, B, D>(x, weight, bias);
        });
    }
    let dtype = x.dtype();
    let weight = weight.cast(dtype);
    burn::tensor::module::linear(x, weight, bias.map(|b| b.cast(dtype)))
}

/// [`linear`] on a backend with fused kernels: `x` flattened to rows, one `fused_linear`.
#[cfg(feature = "flex")]
fn fused_linear<K: FusedOps, B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let x2 = x.reshape([dims.iter().product::<usize>() / d_in.max(1), d_in]);
    let (x2, w) = (to::<K, B, 2>(x2), to::<K, B, 2>(weight));
    let y = back::<K, B, 2>(K::fused_linear(x2, w, bias.map(to::<K, B, 1>)));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// A tied head's logits for a few rows (decoding), reading the `[V, C]` embedding table once
/// on every core (an f32 table, or one stored in bf16 with f32 rows); `None` when the backend
/// has no such kernel or the rows are many (use a matmul then).
///
/// # Shapes
/// - x: `[M, C]`; table: `[V, C]`
/// - output: `[M, V]`
pub fn tied_head_rows<B: Backend>(x: &Tensor<B, 2>, table: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let table_ok = matches!(table.dtype(), DType::F32 | DType::BF16);
    if all_f32(&[x.dtype()]) && table_ok {
        with_fused!(inference, B, |K| {
            let (x, w) = (to::<K, B, 2>(x.clone()), to::<K, B, 2>(table.clone()));
            return K::fused_tied_head_rows(x, w).map(back::<K, B, 2>);
        });
    }
    None
}

/// `x` converted to `dtype`. On the CPU backend (inference) f32 to bf16 (rounded to nearest
/// even) and bf16 to f32 (exact) take one pass on all cores; Burn's `cast` elsewhere (on
/// burn-flex it goes through an f64 copy of the whole tensor).
pub fn cast<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: FloatDType) -> Tensor<B, D> {
    if x.dtype() == DType::from(dtype) {
        return x;
    }
    if matches!(x.dtype(), DType::F32 | DType::BF16) {
        with_fused!(inference, B, |K| {
            if let Some(y) = flex::cast(to::<K, B, D>(x.clone()), dtype) {
                return back::<K, B, D>(y);
            }
        });
    }
    x.cast(dtype)
}

/// One AdamW step (Loshchilov & Hutter 2019) on a parameter: Burn's `AdamW` arithmetic, in
/// one in-place pass on the CPU. `moments` are `None` before the first step. Returns the
/// parameter and both moments.
pub fn adamw<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    step: AdamWStep,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let moments_f32 = moments
        .as_ref()
        .is_none_or(|(m, v)| all_f32(&[m.dtype(), v.dtype()]));
    if all_f32(&[param.dtype(), grad.dtype()]) && moments_f32 {
        with_fused!(inference, B, |K| {
            let moments = moments.map(|(m, v)| (to::<K, B, D>(m), to::<K, B, D>(v)));
            let (p, m, v) =
                K::fused_adamw(to::<K, B, D>(param), to::<K, B, D>(grad), moments, step);
            return (back::<K, B, D>(p), back::<K, B, D>(m), back::<K, B, D>(v));
        });
    }
    generic::adamw(param, grad, moments, step)
}
