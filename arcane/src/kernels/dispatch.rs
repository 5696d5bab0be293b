//! From a generic `B: Backend` to the backends with fused kernels, at run time: `B` is
//! compared with each of them by `TypeId`, and on a match the tensors are moved across by a
//! checked downcast (a no-op: the types are the same). The model keeps its `B: Backend` bound
//! and names no backend; only this file lists them.

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::sync::OnceLock;

use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};

thread_local! {
    /// Set by [`generic_only`] on this thread.
    static GENERIC_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the fused kernels switched off on this thread: every operation takes the
/// generic path. For comparisons (tests, benchmarks); other threads are not affected.
pub fn generic_only<R>(f: impl FnOnce() -> R) -> R {
    let before = GENERIC_ONLY.with(|g| g.replace(true));
    let out = f();
    GENERIC_ONLY.with(|g| g.set(before));
    out
}

/// False inside [`generic_only`], and everywhere when the environment variable
/// `ARCANE_FUSED` is `0` (read once; for comparisons with the generic path).
pub fn fused_enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    let env = *ENV.get_or_init(|| std::env::var("ARCANE_FUSED").map_or(true, |v| v.trim() != "0"));
    env && !GENERIC_ONLY.with(Cell::get)
}

/// True when `A` and `B` are the same type.
pub fn same<A: 'static, B: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<B>()
}

/// Moves `value` into type `U`, which must be `T` itself (checked).
pub fn cast<T: 'static, U: 'static>(value: T) -> U {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("cast between different types")
}

/// A float tensor of `B` as one of `K`, which must be `B` itself.
pub fn to<K: Backend, B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatPrim<K> {
    cast(x.into_primitive().tensor())
}

/// The float primitive of `K` back as a tensor of `B`, which must be `K` itself.
pub fn back<K: Backend, B: Backend, const D: usize>(x: FloatPrim<K>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(x)))
}

/// The int primitive of `B` as one of `K`.
pub fn to_int<K: Backend, B: Backend, const D: usize>(x: Tensor<B, D, Int>) -> IntPrim<K> {
    cast(x.into_primitive())
}

/// `K`'s float tensor primitive.
pub type FloatPrim<K> = burn::tensor::ops::FloatTensor<K>;
/// `K`'s int tensor primitive.
pub type IntPrim<K> = burn::tensor::ops::IntTensor<K>;

/// True when every tensor is `f32`, the only dtype of the fused kernels.
pub fn all_f32(dtypes: &[DType]) -> bool {
    dtypes.iter().all(|d| *d == DType::F32)
}

/// Runs `$body` with the type alias `$k` bound to `$b` when `$b` is a backend with fused
/// kernels of kind `$kind`: `fused` (the CPU backend and `Autodiff` over it) or `inference`
/// (the CPU backend only). `$body` should `return`; otherwise execution continues after it.
macro_rules! with_fused {
    (fused, $b:ty, |$k:ident| $body:block) => {
        #[cfg(feature = "flex")]
        {
            use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
            use burn::backend::{Autodiff, Flex};
            use $crate::kernels::dispatch::{fused_enabled, same};
            if !fused_enabled() {
            } else if same::<$b, Flex>() {
                type $k = Flex;
                $body
            } else if same::<$b, Autodiff<Flex>>() {
                type $k = Autodiff<Flex>;
                $body
            } else if same::<$b, Autodiff<Flex, BalancedCheckpointing>>() {
                type $k = Autodiff<Flex, BalancedCheckpointing>;
                $body
            }
        }
    };
    (inference, $b:ty, |$k:ident| $body:block) => {
        #[cfg(feature = "flex")]
        {
            use $crate::kernels::dispatch::{fused_enabled, same};
            if fused_enabled() && same::<$b, burn::backend::Flex>() {
                type $k = burn::backend::Flex;
                $body
            }
        }
    };
}
pub(crate) use with_fused;
