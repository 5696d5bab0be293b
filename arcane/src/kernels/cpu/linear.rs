//! The projection `y = x·W + b` (`W` `[in, out]`, Burn's layout) and its gradients on row-major
//! matrices: one gemm each, on all cores, with the bias folded in (the output starts as the
//! bias rows and the product is accumulated onto it) and its gradient as column sums.

use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use super::simd::multiversion;
use super::{gemv, gemv_bf16};

/// Rows up to this many go through the matrix-vector kernel (decoding).
pub const MAX_GEMV_ROWS: usize = 8;
/// Columns per task of the bias gradient.
const BIAS_COLUMNS: usize = 256;

/// `y[m, out] = x[m, in]·W[in, out] (+ b)`.
pub fn forward(
    x: &[f32],
    m: usize,
    w: &[f32],
    d_in: usize,
    out: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    if m <= MAX_GEMV_ROWS {
        return gemv::matvec(x, m, w, d_in, out, bias);
    }
    let mut y = match bias {
        Some(b) => {
            let mut y = vec![0.0f32; m * out];
            y.par_chunks_mut(out).for_each(|row| row.copy_from_slice(b));
            y
        }
        None => vec![0.0f32; m * out],
    };
    matmul(
        &mut y,
        bias.is_some(),
        MatRef::rows(x, d_in),
        MatRef::rows(w, out),
        m,
        d_in,
        out,
    );
    y
}

/// `y[m, out] = x[m, in]·W[in, out] (+ b)` with `W` stored in bf16 (inference): the
/// matrix-vector kernel on the bf16 weights for a few rows; for more rows the products are
/// compute-bound, and `W` is widened to f32 (exact) for the gemm.
pub fn forward_bf16(
    x: &[f32],
    m: usize,
    w: &[half::bf16],
    d_in: usize,
    out: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    if m <= MAX_GEMV_ROWS {
        return gemv_bf16::matvec(x, m, w, d_in, out, bias);
    }
    forward(x, m, &gemv_bf16::widen(w), d_in, out, bias)
}

/// `dx = dy·Wᵀ` `[m, in]`.
pub fn grad_input(dy: &[f32], m: usize, w: &[f32], d_in: usize, out: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; m * d_in];
    matmul(
        &mut dx,
        false,
        MatRef::rows(dy, out),
        MatRef::transposed(w, out),
        m,
        out,
        d_in,
    );
    dx
}

/// `dW = xᵀ·dy` `[in, out]`.
pub fn grad_weight(x: &[f32], dy: &[f32], m: usize, d_in: usize, out: usize) -> Vec<f32> {
    let mut dw = vec![0.0f32; d_in * out];
    matmul(
        &mut dw,
        false,
        MatRef::transposed(x, d_in),
        MatRef::rows(dy, out),
        d_in,
        m,
        out,
    );
    dw
}

multiversion! {
    fn add_rows(dy: &[f32], out: usize, c0: usize, acc: &mut [f32]) {
        let n = acc.len();
        for row in dy.chunks_exact(out) {
            for (a, &g) in acc.iter_mut().zip(&row[c0..c0 + n]) {
                *a += g;
            }
        }
    }
}

/// `db = Σ_rows dy` `[out]`: columns split over cores, rows added in order (deterministic).
pub fn grad_bias(dy: &[f32], out: usize) -> Vec<f32> {
    let mut db = vec![0.0f32; out];
    db.par_chunks_mut(BIAS_COLUMNS)
        .enumerate()
        .for_each(|(i, acc)| add_rows(dy, out, i * BIAS_COLUMNS, acc));
    db
}
