//! The fused operations as backend traits: [`FusedOps`] is what the model's layers call on a
//! backend that has fast paths; [`FusedGrads`] adds what their backward passes need from the
//! inner backend of `Autodiff`. Burn's own `Backend` trait has no such ops (its autodiff
//! decomposes LayerNorm and tanh-GELU into 7-10 recorded operations each).
//!
//! Implemented for the CPU backend (`flex.rs`) and for `Autodiff` over it (`autodiff.rs`);
//! every other backend takes the generic path of [`super`], composed of Burn tensor ops.
//! All tensors are `f32` and contiguous in their last dimension's order (callers check the
//! dtype; implementations make views contiguous).

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};

pub use super::params::{AdamWStep, HeadLayout, KeyPrefix};

/// Backends with fused kernels for the forward pass.
pub trait FusedOps: Backend {
    /// LayerNorm (`rms = false`, optional bias) or RMSNorm over the last dimension.
    ///
    /// # Shapes
    /// - x: `[..., C]`; weight, bias: `[C]`
    /// - output: `[..., C]`
    fn fused_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        eps: f64,
        rms: bool,
    ) -> FloatTensor<Self>;

    /// GPT-2's tanh-approximated GELU, elementwise.
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `silu(gate) · up`, elementwise (same shapes).
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Mean cross-entropy of `targets` under the logits `hidden · headᵀ`, without holding the
    /// logits of all rows.
    ///
    /// # Shapes
    /// - hidden: `[N, C]`; weight: `[V, C]` or `[C, V]` (`layout`); targets: `[N]`
    /// - output: `[1]`
    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        layout: HeadLayout,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Causal attention `softmax(q·kᵀ·scale)·v` (query `i` sees keys `0..=i`, or only
    /// `i - window < j <= i` with a sliding window; `usize::MAX` for none); query head `h`
    /// reads key/value head `h / (H / Hkv)`.
    ///
    /// # Shapes
    /// - q: `[B, H, T, D]`; k, v: `[B, Hkv, T, D]`
    /// - output: `[B, H, T, D]`
    fn fused_causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
        window: usize,
    ) -> FloatTensor<Self>;

    /// Attention of `R` query rows where row `r` sees keys `0..=start + r % period` (decoding
    /// over a cache buffer; see [`KeyPrefix`]). Inference only.
    ///
    /// # Shapes
    /// - q: `[B, H, R, D]`; k, v: `[B, Hkv, S, D]`
    /// - output: `[B, H, R, D]`
    fn fused_prefix_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        prefix: KeyPrefix,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// `buffer[:, :, start..start + T, :] = values`, in place when `buffer` is not shared.
    ///
    /// # Shapes
    /// - buffer: `[B, H, S, D]`; values: `[B, H, T, D]`
    /// - output: `[B, H, S, D]`
    fn fused_write_positions(
        buffer: FloatTensor<Self>,
        start: usize,
        values: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Rotary embedding of heads `x` at positions `start..start + T` with the `[S, D]` tables
    /// `cos` and `sin_signed` (rotate-half convention, first half of the sines negated).
    ///
    /// # Shapes
    /// - x: `[B, H, T, D]`; cos, sin: `[S, D]`
    /// - output: `[B, H, T, D]`
    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self>;

    /// The projection `x · W (+ b)`.
    ///
    /// # Shapes
    /// - x: `[M, in]`; weight: `[in, out]`; bias: `[out]`
    /// - output: `[M, out]`
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self>;

    /// A tied head's logits `x · Wteᵀ` for a few rows (decoding) by one dot product per row of
    /// the table, or `None` when a matmul is better (many rows, or a recorded graph).
    ///
    /// # Shapes
    /// - x: `[M, C]`; table: `[V, C]`
    /// - output: `[M, V]`
    fn fused_tied_head_rows(
        x: FloatTensor<Self>,
        table: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>>;

    /// One AdamW step on a parameter, in place when the tensors are not shared; moments are
    /// zeros when `None` (the first step). Returns the parameter and both moments.
    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moments: Option<(FloatTensor<Self>, FloatTensor<Self>)>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Forward passes that keep what the backward pass needs, and the backward passes.
pub trait FusedGrads: FusedOps {
    /// [`FusedOps::fused_norm`] plus the row means and reciprocal deviations `[N]`.
    fn norm_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        eps: f64,
        rms: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of the norm: `(dx, dweight, dbias)`.
    fn norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        rms: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `grad · gelu_tanh'(x)`.
    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Gradients of `silu(gate) · up`: `(dgate, dup)`.
    fn swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The loss and its gradients for hidden states and weight (for an upstream gradient of 1).
    fn linear_cross_entropy_train(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        layout: HeadLayout,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// [`FusedOps::fused_causal_attention`] plus each query row's log-sum-exp `[B, H, T]`.
    fn causal_attention_train(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
        window: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of causal attention: `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
        window: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of [`FusedOps::fused_linear`] for input, weight and bias, each computed only
    /// when `need` asks for it.
    fn linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        need: [bool; 3],
    ) -> [Option<FloatTensor<Self>>; 3];

    /// Gradient of [`FusedOps::fused_rope`]: the rotation by the opposite angles.
    fn rope_backward(
        grad: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self>;

    /// `tensor · s` for a one-element `s` (free when `s` is 1).
    fn scale_by(tensor: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self>;
}
