//! The fused operations on burn-flex, Burn's CPU backend: tensors in, slices to the kernels
//! of `cpu/`, tensors out.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::Flex;
use burn::tensor::{bf16, Bytes, DType, FloatDType, Shape, TensorMetadata};

use super::cpu::{adamw, elementwise, gemv, gemv_bf16, linear, norm, xent};
use super::flex_attention;
use super::fused::{AdamWStep, FusedGrads, FusedOps, HeadLayout, KeyPrefix};

/// `t` with its elements contiguous from offset 0 and nothing else in its buffer (so that
/// `storage()` is exactly its elements); a copy only when it is a view.
fn dense(t: FlexTensor) -> FlexTensor {
    let exact = t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * t.dtype().size();
    if exact {
        t
    } else {
        t.to_contiguous()
    }
}

/// The `f32` elements of a dense tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.storage::<f32>()
}

/// A new contiguous `f32` tensor.
fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// `t` (f32 or bf16) converted to `dtype` (f32 or bf16) in one parallel pass, rounding to
/// nearest even; `None` for other dtypes (Burn's cast handles them).
pub fn cast(t: FlexTensor, dtype: FloatDType) -> Option<FlexTensor> {
    let shape = t.shape();
    match (t.dtype(), dtype) {
        (DType::F32, FloatDType::BF16) => {
            let v = gemv_bf16::round_to_bf16(values(&dense(t)));
            Some(FlexTensor::new(
                Bytes::from_elems(v),
                Layout::contiguous(shape),
                DType::BF16,
            ))
        }
        (DType::BF16, FloatDType::F32) => {
            Some(tensor(gemv_bf16::widen(dense(t).storage::<bf16>()), shape))
        }
        _ => None,
    }
}

/// Class ids of an int tensor as indices.
fn indices(t: FlexTensor) -> Vec<usize> {
    let t = t.to_contiguous();
    match t.dtype() {
        DType::I64 => t.storage::<i64>().iter().map(|&x| x as usize).collect(),
        DType::I32 => t.storage::<i32>().iter().map(|&x| x as usize).collect(),
        DType::U32 => t.storage::<u32>().iter().map(|&x| x as usize).collect(),
        DType::U64 => t.storage::<u64>().iter().map(|&x| x as usize).collect(),
        other => panic!("class ids must be integers, got {other:?}"),
    }
}

/// `(rows, width)` of a tensor seen as a matrix over its last dimension.
fn rows_of(t: &FlexTensor) -> (usize, usize) {
    let shape = t.shape();
    let c = shape.as_slice().last().copied().unwrap_or(1);
    (shape.num_elements() / c.max(1), c)
}

impl FusedOps for Flex {
    fn fused_norm(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        eps: f64,
        rms: bool,
    ) -> FlexTensor {
        Self::norm_train(x, weight, bias, eps, rms).0
    }

    fn fused_gelu_tanh(x: FlexTensor) -> FlexTensor {
        let x = dense(x);
        let mut y = vec![0.0; x.shape().num_elements()];
        elementwise::gelu(values(&x), &mut y);
        tensor(y, x.shape())
    }

    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let (gate, up) = (dense(gate), dense(up));
        let mut y = vec![0.0; gate.shape().num_elements()];
        elementwise::swiglu(values(&gate), values(&up), &mut y);
        tensor(y, gate.shape())
    }

    fn fused_linear_cross_entropy(
        hidden: FlexTensor,
        weight: FlexTensor,
        layout: HeadLayout,
        targets: FlexTensor,
    ) -> FlexTensor {
        let (h, w) = (dense(hidden), dense(weight));
        let (_, c) = rows_of(&h);
        let v = w.shape().num_elements() / c;
        let t = indices(targets);
        let out = xent::linear_cross_entropy(values(&h), values(&w), layout, &t, c, v, false);
        tensor(vec![out.loss], Shape::new([1]))
    }

    fn fused_causal_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        scale: f64,
        window: usize,
    ) -> FlexTensor {
        flex_attention::forward(q, k, v, scale, window).0
    }

    fn fused_prefix_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        prefix: KeyPrefix,
        scale: f64,
    ) -> FlexTensor {
        flex_attention::forward_prefix(q, k, v, prefix, scale)
    }

    fn fused_write_positions(buffer: FlexTensor, start: usize, values: FlexTensor) -> FlexTensor {
        flex_attention::write_positions(buffer, start, values)
    }

    fn fused_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, start: usize) -> FlexTensor {
        flex_attention::rotate(x, cos, sin, start, false)
    }

    fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
        let (x, w) = (dense(x), dense(weight));
        let bias = bias.map(dense);
        let (m, d_in) = rows_of(&x);
        let out = w.shape().as_slice()[1];
        let (xv, b) = (values(&x), bias.as_ref().map(values));
        let y = match w.dtype() {
            // Weights stored in bf16 for inference (see `kernels::linear`).
            DType::BF16 => linear::forward_bf16(xv, m, w.storage::<bf16>(), d_in, out, b),
            _ => linear::forward(xv, m, values(&w), d_in, out, b),
        };
        tensor(y, Shape::new([m, out]))
    }

    fn fused_tied_head_rows(x: FlexTensor, table: FlexTensor) -> Option<FlexTensor> {
        let (m, c) = rows_of(&x);
        if m > linear::MAX_GEMV_ROWS {
            return None;
        }
        let (x, w) = (dense(x), dense(table));
        let v = w.shape().as_slice()[0];
        let y = match w.dtype() {
            DType::BF16 => gemv_bf16::rows_dot(values(&x), m, w.storage::<bf16>(), c),
            _ => gemv::rows_dot(values(&x), m, values(&w), c),
        };
        Some(tensor(y, Shape::new([m, v])))
    }

    fn fused_adamw(
        param: FlexTensor,
        grad: FlexTensor,
        moments: Option<(FlexTensor, FlexTensor)>,
        step: AdamWStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = param.shape();
        let n = shape.num_elements();
        let (mut p, g) = (dense(param), dense(grad));
        let (mut m, mut v) = match moments {
            Some((m, v)) => (dense(m), dense(v)),
            None => (
                tensor(vec![0.0; n], shape.clone()),
                tensor(vec![0.0; n], shape.clone()),
            ),
        };
        let (ms, vs) = (m.storage_mut::<f32>(), v.storage_mut::<f32>());
        // An unshared parameter is updated in place; a shared one (burn-train's Learner keeps
        // the model while it steps) into a new buffer in the same pass.
        if p.is_unique() {
            adamw::step(p.storage_mut::<f32>(), values(&g), ms, vs, step);
        } else {
            p = tensor(
                adamw::step_into(values(&p), values(&g), ms, vs, step),
                shape,
            );
        }
        (p, m, v)
    }
}

impl FusedGrads for Flex {
    fn norm_train(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        eps: f64,
        rms: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, w) = (dense(x), dense(weight));
        let bias = bias.map(dense);
        let (n, _) = rows_of(&x);
        let mut y = vec![0.0; x.shape().num_elements()];
        let b = bias.as_ref().map(values);
        let stats = norm::forward(values(&x), values(&w), b, eps as f32, rms, &mut y);
        (
            tensor(y, x.shape()),
            tensor(stats.mean, Shape::new([n])),
            tensor(stats.rstd, Shape::new([n])),
        )
    }

    fn norm_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        mean: FlexTensor,
        rstd: FlexTensor,
        rms: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, w, dy) = (dense(x), dense(weight), dense(grad));
        let stats = norm::NormStats {
            mean: values(&dense(mean)).to_vec(),
            rstd: values(&dense(rstd)).to_vec(),
        };
        let (dx, dw, db) = norm::backward(values(&x), values(&w), values(&dy), &stats, rms);
        (
            tensor(dx, x.shape()),
            tensor(dw, w.shape()),
            tensor(db, w.shape()),
        )
    }

    fn gelu_tanh_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, dy) = (dense(x), dense(grad));
        let mut dx = vec![0.0; x.shape().num_elements()];
        elementwise::gelu_grad(values(&x), values(&dy), &mut dx);
        tensor(dx, x.shape())
    }

    fn swiglu_backward(
        gate: FlexTensor,
        up: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (gate, up, dy) = (dense(gate), dense(up), dense(grad));
        let n = gate.shape().num_elements();
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        elementwise::swiglu_grad(values(&gate), values(&up), values(&dy), &mut dg, &mut du);
        (tensor(dg, gate.shape()), tensor(du, gate.shape()))
    }

    fn linear_cross_entropy_train(
        hidden: FlexTensor,
        weight: FlexTensor,
        layout: HeadLayout,
        targets: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (h, w) = (dense(hidden), dense(weight));
        let (_, c) = rows_of(&h);
        let v = w.shape().num_elements() / c;
        let t = indices(targets);
        let out = xent::linear_cross_entropy(values(&h), values(&w), layout, &t, c, v, true);
        let (dh, dw) = out.grads.expect("gradients were asked for");
        (
            tensor(vec![out.loss], Shape::new([1])),
            tensor(dh, h.shape()),
            tensor(dw, w.shape()),
        )
    }

    fn causal_attention_train(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        scale: f64,
        window: usize,
    ) -> (FlexTensor, FlexTensor) {
        flex_attention::forward(q, k, v, scale, window)
    }

    fn causal_attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        grad: FlexTensor,
        scale: f64,
        window: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        flex_attention::backward(q, k, v, out, lse, grad, (scale, window))
    }

    fn linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        need: [bool; 3],
    ) -> [Option<FlexTensor>; 3] {
        let (x, w, dy) = (dense(x), dense(weight), dense(grad));
        let (m, d_in) = rows_of(&x);
        let out = w.shape().as_slice()[1];
        let (xv, wv, dyv) = (values(&x), values(&w), values(&dy));
        [
            need[0].then(|| tensor(linear::grad_input(dyv, m, wv, d_in, out), x.shape())),
            need[1].then(|| tensor(linear::grad_weight(xv, dyv, m, d_in, out), w.shape())),
            need[2].then(|| tensor(linear::grad_bias(dyv, out), Shape::new([out]))),
        ]
    }

    fn rope_backward(
        grad: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        start: usize,
    ) -> FlexTensor {
        flex_attention::rotate(grad, cos, sin, start, true)
    }

    fn scale_by(t: FlexTensor, s: FlexTensor) -> FlexTensor {
        let s = dense(s);
        let factor = values(&s)[0];
        if factor == 1.0 {
            return t;
        }
        let mut t = dense(t);
        elementwise::scale(t.storage_mut::<f32>(), factor);
        t
    }
}
