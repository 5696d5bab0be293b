//! The generic path of every fused operation: the same math composed of Burn tensor ops, for
//! backends without fused kernels (GPUs, where Burn's fusion merges elementwise work itself)
//! and for dtypes other than `f32`.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::TensorPrimitive;

use super::fused::{AdamWStep, HeadLayout};

/// LayerNorm through the backend's `layer_norm` op, or RMSNorm as `LlamaRMSNorm` computes it.
pub fn norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    bias: Option<Tensor<B, 1>>,
    eps: f64,
    rms: bool,
) -> Tensor<B, D> {
    if rms {
        let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
        (x / rms) * weight.unsqueeze()
    } else {
        let bias = bias.map(|b| b.into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
            x.into_primitive().tensor(),
            weight.into_primitive().tensor(),
            bias,
            eps,
        )))
    }
}

/// `gelu_tanh` as Burn composes it.
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    gelu_approximate(x)
}

/// `silu(gate) · up`.
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}

/// Key/value heads repeated for grouped-query attention (`repeat_kv` in Hugging Face Llama),
/// then Burn's attention with `is_causal` (exact: queries and keys are the same positions), or
/// with the mask of a sliding window (query `i` sees `i - W < j <= i`).
pub fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    window: Option<usize>,
) -> Tensor<B, 4> {
    let (h, hkv) = (q.dims()[1], k.dims()[1]);
    let (k, v) = if hkv != h {
        let [b, _, s, d] = k.dims();
        let repeat = |y: Tensor<B, 4>| {
            y.unsqueeze_dim::<5>(2)
                .expand([b, hkv, h / hkv, s, d])
                .reshape([b, h, s, d])
        };
        (repeat(k), repeat(v))
    } else {
        (k, v)
    };
    let t = q.dims()[2];
    let mask = window.filter(|&w| w < t).map(|w| {
        // `true` hides a key (Burn's convention).
        let hidden: Vec<bool> = (0..t * t)
            .map(|n| n % t > n / t || n / t - n % t >= w)
            .collect();
        Tensor::<B, 2, Bool>::from_data(TensorData::new(hidden, [t, t]), &q.device()).unsqueeze()
    });
    let options = AttentionModuleOptions {
        is_causal: mask.is_none(),
        ..Default::default()
    };
    attention(q, k, v, mask, None, options)
}

/// The head's logits for all rows, then Burn's cross-entropy.
pub fn linear_cross_entropy<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    layout: HeadLayout,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let logits = match layout {
        HeadLayout::VocabMajor => hidden.matmul(weight.transpose()),
        HeadLayout::ChannelMajor => hidden.matmul(weight),
    };
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}

/// Burn's `AdamW` step, operation for operation.
pub fn adamw<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    s: AdamWStep,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
    let (m, v) = match moments {
        Some((m, v)) => (
            m.mul_scalar(s.beta_1).add(grad.clone().mul_scalar(f1)),
            v.mul_scalar(s.beta_2).add(grad.square().mul_scalar(f2)),
        ),
        None => (grad.clone().mul_scalar(f1), grad.square().mul_scalar(f2)),
    };
    let m_hat = m.clone().div_scalar(s.correction_1);
    let v_hat = v.clone().div_scalar(s.correction_2);
    let delta = m_hat.div(v_hat.sqrt().add_scalar(s.epsilon));
    let decayed = if s.decay == 1.0 {
        param
    } else {
        param.mul_scalar(s.decay)
    };
    (decayed - delta.mul_scalar(s.lr), m, v)
}
