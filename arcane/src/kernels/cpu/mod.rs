//! CPU kernels on plain `f32` slices: no Burn types, run-time SIMD dispatch, rayon for cores.

pub mod adamw;
pub mod attention;
pub mod attention_grad;
#[cfg(target_arch = "x86_64")]
mod bf16_x86;
pub mod elementwise;
pub mod gemm;
pub mod gemv;
pub mod gemv_bf16;
pub mod linear;
pub mod math;
pub mod norm;
mod par;
mod reduce;
pub mod rope;
pub mod simd;
pub mod xent;
