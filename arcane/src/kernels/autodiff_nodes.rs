//! The backward nodes of the fused operations (see `autodiff.rs`): each consumes its output's
//! gradient and registers those of its tracked parents, computed by the inner backend's fused
//! gradient kernels from the state its forward pass kept.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::tensor::ops::FloatTensor;

use super::fused::FusedGrads;

/// Registers `values[i]` as the gradient of parent `i` when that parent is tracked. (A macro:
/// the node type is not nameable outside burn-autodiff.)
macro_rules! register {
    ($B:ty, $parents:expr, $values:expr, $grads:expr) => {
        for (parent, value) in $parents.into_iter().zip($values) {
            if let Some(node) = parent {
                $grads.register::<$B>(node.id, value);
            }
        }
    };
}

/// Norm with (`N = 3`) or without (`N = 2`) bias.
#[derive(Debug)]
pub(super) struct NormBackward<const N: usize> {
    pub(super) rms: bool,
}

type NormState<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
);

impl<B: FusedGrads, const N: usize> Backward<B, N> for NormBackward<N> {
    type State = NormState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, mean, rstd) = ops.state;
        let (dx, dw, db) = B::norm_backward(x, weight, grad, mean, rstd, self.rms);
        let mut all = [Some(dx), Some(dw), Some(db)].into_iter();
        let values: [FloatTensor<B>; N] = std::array::from_fn(|_| all.next().flatten().unwrap());
        register!(B, ops.parents, values, grads);
    }
}

#[derive(Debug)]
pub(super) struct GeluBackward;

impl<B: FusedGrads> Backward<B, 1> for GeluBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        register!(
            B,
            ops.parents,
            [B::gelu_tanh_backward(ops.state, grad)],
            grads
        );
    }
}

#[derive(Debug)]
pub(super) struct SwigluBackward;

impl<B: FusedGrads> Backward<B, 2> for SwigluBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (gate, up) = ops.state;
        let (dg, du) = B::swiglu_backward(gate, up, grad);
        register!(B, ops.parents, [dg, du], grads);
    }
}

#[derive(Debug)]
pub(super) struct XentBackward;

impl<B: FusedGrads> Backward<B, 2> for XentBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node); // [1]
        let (dh, dw) = ops.state;
        let values = [B::scale_by(dh, grad.clone()), B::scale_by(dw, grad)];
        register!(B, ops.parents, values, grads);
    }
}

/// Linear with (`N = 3`) or without (`N = 2`) bias; the state is `x` and the weight.
#[derive(Debug)]
pub(super) struct LinearBackward<const N: usize>;

impl<B: FusedGrads, const N: usize> Backward<B, N> for LinearBackward<N> {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let need: [bool; 3] =
            std::array::from_fn(|i| ops.parents.get(i).is_some_and(Option::is_some));
        let values = B::linear_backward(x, weight, grad, need);
        for (parent, value) in ops.parents.into_iter().zip(values) {
            if let (Some(node), Some(value)) = (parent, value) {
                grads.register::<B>(node.id, value);
            }
        }
    }
}

/// RoPE: the state is the two tables and the first position.
#[derive(Debug)]
pub(super) struct RopeBackward;

impl<B: FusedGrads> Backward<B, 1> for RopeBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (cos, sin, start) = ops.state;
        register!(
            B,
            ops.parents,
            [B::rope_backward(grad, cos, sin, start)],
            grads
        );
    }
}

#[derive(Debug)]
pub(super) struct AttentionBackward {
    pub(super) scale: f64,
    /// The sliding window (`usize::MAX`: none).
    pub(super) window: usize,
}

/// `q`, `k`, `v`, the output and its log-sum-exp.
type AttentionState<B> = [FloatTensor<B>; 5];

impl<B: FusedGrads> Backward<B, 3> for AttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [q, k, v, out, lse] = ops.state;
        let (dq, dk, dv) =
            B::causal_attention_backward(q, k, v, out, lse, grad, self.scale, self.window);
        register!(B, ops.parents, [dq, dk, dv], grads);
    }
}
