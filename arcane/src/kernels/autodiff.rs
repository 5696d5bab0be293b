//! The fused operations under `Autodiff`: one graph node each, whose backward pass calls the
//! inner backend's fused gradient kernel, instead of Burn's 7-10 recorded elementwise nodes
//! (each holding its own saved tensors) for a LayerNorm or a tanh-GELU. The cross-entropy
//! node holds the gradients computed in its forward pass (the loss is the graph's root, so its
//! upstream gradient is a scalar that only rescales them).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::autodiff_nodes::{
    AttentionBackward, GeluBackward, LinearBackward, NormBackward, RopeBackward, SwigluBackward,
    XentBackward,
};
use super::fused::{AdamWStep, FusedGrads, FusedOps, HeadLayout, KeyPrefix};

impl<B: FusedGrads, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        eps: f64,
        rms: bool,
    ) -> FloatTensor<Self> {
        let Some(bias) = bias else {
            let nodes = [x.node.clone(), weight.node.clone()];
            return match (NormBackward::<2> { rms })
                .prepare::<C>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (xp, wp) = (x.primitive, weight.primitive);
                    let (y, mean, rstd) = B::norm_train(xp.clone(), wp.clone(), None, eps, rms);
                    prep.finish((xp, wp, mean, rstd), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::fused_norm(x.primitive, weight.primitive, None, eps, rms))
                }
            };
        };
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match (NormBackward::<3> { rms })
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp) = (x.primitive, weight.primitive);
                let (y, mean, rstd) =
                    B::norm_train(xp.clone(), wp.clone(), Some(bias.primitive), eps, rms);
                prep.finish((xp, wp, mean, rstd), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_norm(
                x.primitive,
                weight.primitive,
                Some(bias.primitive),
                eps,
                rms,
            )),
        }
    }

    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_gelu_tanh(x.primitive.clone());
                prep.finish(x.primitive, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu_tanh(x.primitive)),
        }
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [gate.node.clone(), up.node.clone()];
        match SwigluBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_swiglu(gate.primitive.clone(), up.primitive.clone());
                prep.finish((gate.primitive, up.primitive), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_swiglu(gate.primitive, up.primitive)),
        }
    }

    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        layout: HeadLayout,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [hidden.node.clone(), weight.node.clone()];
        match XentBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (loss, dh, dw) = B::linear_cross_entropy_train(
                    hidden.primitive,
                    weight.primitive,
                    layout,
                    targets,
                );
                prep.finish((dh, dw), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear_cross_entropy(
                hidden.primitive,
                weight.primitive,
                layout,
                targets,
            )),
        }
    }

    fn fused_causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
        window: usize,
    ) -> FloatTensor<Self> {
        let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
        match (AttentionBackward { scale, window })
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.primitive, k.primitive, v.primitive);
                let (out, lse) =
                    B::causal_attention_train(q.clone(), k.clone(), v.clone(), scale, window);
                prep.finish([q, k, v, out.clone(), lse], out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_causal_attention(
                q.primitive,
                k.primitive,
                v.primitive,
                scale,
                window,
            )),
        }
    }

    fn fused_prefix_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        prefix: KeyPrefix,
        scale: f64,
    ) -> FloatTensor<Self> {
        // Inference only (the public function dispatches it to the inner backend); a caller
        // with tracked tensors gets an untracked result.
        let inner = |t: FloatTensor<Self>| <Self as AutodiffBackend>::inner(t);
        let out = B::fused_prefix_attention(inner(q), inner(k), inner(v), prefix, scale);
        <Self as AutodiffBackend>::from_inner(out)
    }

    fn fused_write_positions(
        buffer: FloatTensor<Self>,
        start: usize,
        values: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Inference only, like `fused_prefix_attention`.
        let inner = |t: FloatTensor<Self>| <Self as AutodiffBackend>::inner(t);
        let out = B::fused_write_positions(inner(buffer), start, inner(values));
        <Self as AutodiffBackend>::from_inner(out)
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (cos.primitive, sin.primitive);
        match RopeBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_rope(x.primitive, cos.clone(), sin.clone(), start);
                prep.finish((cos, sin, start), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_rope(x.primitive, cos, sin, start)),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let Some(bias) = bias else {
            let nodes = [x.node.clone(), weight.node.clone()];
            return match LinearBackward::<2>
                .prepare::<C>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (xp, wp) = (x.primitive, weight.primitive);
                    let y = B::fused_linear(xp.clone(), wp.clone(), None);
                    prep.finish((xp, wp), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::fused_linear(x.primitive, weight.primitive, None))
                }
            };
        };
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match LinearBackward::<3>
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp) = (x.primitive, weight.primitive);
                let y = B::fused_linear(xp.clone(), wp.clone(), Some(bias.primitive));
                prep.finish((xp, wp), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear(
                x.primitive,
                weight.primitive,
                Some(bias.primitive),
            )),
        }
    }

    fn fused_tied_head_rows(
        _x: FloatTensor<Self>,
        _table: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        // Decoding kernels are inference only; recorded graphs take the matmul.
        None
    }

    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moments: Option<(FloatTensor<Self>, FloatTensor<Self>)>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Optimizers update the inner tensors; this only serves a caller that passes tracked
        // ones, whose results are then untracked.
        let inner = |t: FloatTensor<Self>| <Self as AutodiffBackend>::inner(t);
        let moments = moments.map(|(m, v)| (inner(m), inner(v)));
        let (p, m, v) = B::fused_adamw(inner(param), inner(grad), moments, step);
        let outer = <Self as AutodiffBackend>::from_inner;
        (outer(p), outer(m), outer(v))
    }
}
