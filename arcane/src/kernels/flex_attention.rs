//! Causal attention on burn-flex tensors: strided views in, token-major results out (see
//! `cpu/attention.rs`).

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape, TensorMetadata};

use super::cpu::attention::{self, Heads, KeyPrefix};
use super::cpu::attention_grad::{self, Saved};
use super::cpu::rope;

/// `t` as a `[B, H, T, D]` view the kernel reads in place (a copy only for layouts it cannot:
/// negative strides or a non-unit stride along `D`).
fn heads(t: FlexTensor) -> (FlexTensor, Heads) {
    let readable = |t: &FlexTensor| {
        let s = t.layout().strides();
        s.len() == 4 && s.iter().all(|&x| x >= 0) && s[3] == 1
    };
    let t = if readable(&t) { t } else { t.to_contiguous() };
    let shape = t.shape().dims::<4>();
    let s = t.layout().strides();
    let view = Heads {
        shape,
        strides: [s[0] as usize, s[1] as usize, s[2] as usize],
        offset: t.layout().start_offset(),
    };
    (t, view)
}

/// A `[B, heads, T, D]` tensor over a token-major `[B, T, heads, D]` buffer.
fn token_major(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    let view = Heads::token_major(shape);
    let strides = vec![
        view.strides[0] as isize,
        view.strides[1] as isize,
        view.strides[2] as isize,
        1,
    ];
    let layout = Layout::new(Shape::new(shape), strides, 0);
    FlexTensor::new(Bytes::from_elems(values), layout, DType::F32)
}

/// Causal attention, each query seeing at most the last `window` keys (`usize::MAX`: all):
/// the output `[B, H, T, D]` (over a token-major buffer) and the rows' log-sum-exp `[B, H, T]`.
pub fn forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    scale: f64,
    window: usize,
) -> (FlexTensor, FlexTensor) {
    let ((q, qv), (k, kv), (v, vv)) = (heads(q), heads(k), heads(v));
    let [b, h, t, d] = qv.shape;
    let mut out = vec![0.0f32; b * t * h * d];
    let data = (q.storage::<f32>(), k.storage::<f32>(), v.storage::<f32>());
    let o = Heads::token_major([b, h, t, d]);
    let prefix = KeyPrefix::causal(t).with_window(window);
    let lse = attention::forward(data, (qv, kv, vv), prefix, scale as f32, (&mut out, o));
    let lse = FlexTensor::new(
        Bytes::from_elems(lse),
        Layout::contiguous(Shape::new([b, h, t])),
        DType::F32,
    );
    (token_major(out, [b, h, t, d]), lse)
}

/// Attention of `R` query rows over key prefixes (decoding and chunked prefill with a cache):
/// the output `[B, H, R, D]`, contiguous.
pub fn forward_prefix(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    prefix: KeyPrefix,
    scale: f64,
) -> FlexTensor {
    let ((q, qv), (k, kv), (v, vv)) = (heads(q), heads(k), heads(v));
    let [b, h, r, d] = qv.shape;
    let mut out = vec![0.0f32; b * h * r * d];
    let o = Heads {
        shape: qv.shape,
        strides: [h * r * d, r * d, d],
        offset: 0,
    };
    let data = (q.storage::<f32>(), k.storage::<f32>(), v.storage::<f32>());
    attention::forward(data, (qv, kv, vv), prefix, scale as f32, (&mut out, o));
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::new([b, h, r, d])),
        DType::F32,
    )
}

/// `(dq, dk, dv)` of causal attention with a sliding `window` (`usize::MAX`: none).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    out: FlexTensor,
    lse: FlexTensor,
    grad: FlexTensor,
    (scale, window): (f64, usize),
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let ((q, qv), (k, kv), (v, vv)) = (heads(q), heads(k), heads(v));
    let ((out, ov), (grad, gv)) = (heads(out), heads(grad));
    let lse = lse.to_contiguous();
    let [b, h, t, d] = qv.shape;
    let hkv = kv.shape[1];
    let saved = Saved {
        out: out.storage::<f32>(),
        out_view: ov,
        lse: lse.storage::<f32>(),
        grad: grad.storage::<f32>(),
        grad_view: gv,
    };
    let data = (q.storage::<f32>(), k.storage::<f32>(), v.storage::<f32>());
    let (dq, dk, dv) = attention_grad::backward(data, (qv, kv, vv), (scale as f32, window), saved);
    (
        token_major(dq, [b, h, t, d]),
        token_major(dk, [b, hkv, t, d]),
        token_major(dv, [b, hkv, t, d]),
    )
}

/// `buffer[:, :, start..start + T, :] = values`, in place unless `buffer` is shared.
pub fn write_positions(buffer: FlexTensor, start: usize, values: FlexTensor) -> FlexTensor {
    let exact = buffer.is_contiguous()
        && buffer.layout().start_offset() == 0
        && buffer.bytes().len() == buffer.layout().num_elements() * 4;
    let mut buffer = if exact {
        buffer
    } else {
        buffer.to_contiguous()
    };
    let [b, h, s, d] = buffer.shape().dims::<4>();
    let (values, vv) = heads(values);
    let t = vv.shape[2];
    assert!(
        vv.shape == [b, h, t, d] && start + t <= s,
        "cache write out of bounds"
    );
    let src = values.storage::<f32>();
    let dst = buffer.storage_mut::<f32>();
    for (bi, hi, ti) in
        (0..b).flat_map(|bi| (0..h).flat_map(move |hi| (0..t).map(move |ti| (bi, hi, ti))))
    {
        let from = vv.offset + bi * vv.strides[0] + hi * vv.strides[1] + ti * vv.strides[2];
        let to = ((bi * h + hi) * s + start + ti) * d;
        dst[to..to + d].copy_from_slice(&src[from..from + d]);
    }
    buffer
}

/// RoPE of heads `x` (any `[B, H, T, D]` view), written token-major.
pub fn rotate(
    x: FlexTensor,
    cos: FlexTensor,
    sin: FlexTensor,
    start: usize,
    negate: bool,
) -> FlexTensor {
    let (x, xv) = heads(x);
    let (cos, sin) = (cos.to_contiguous(), sin.to_contiguous());
    let cs = (cos.storage::<f32>(), sin.storage::<f32>());
    let out = rope::apply(x.storage::<f32>(), xv, cs.0, cs.1, start, negate);
    token_major(out, xv.shape)
}
