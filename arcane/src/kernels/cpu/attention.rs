//! Self-attention forward on strided heads (the backward is in `attention_grad.rs`), in the manner of
//! FlashAttention (Dao et al. 2022, arXiv:2205.14135): the `[T, T]` scores are never stored;
//! the forward keeps the output and each row's log-sum-exp, and the backward recomputes the
//! scores block by block.
//!
//! Work is split into blocks of [`ROWS`] query rows; a block attends to keys `0..end` only
//! (the causal half), through `gemm` on the calling thread, while rayon spreads blocks (forward)
//! or key/value heads (backward, which accumulates `dK`, `dV` per head) over the cores.
//! Heads are read in place from `[B, T, H, D]` projections viewed as `[B, H, T, D]`, and the
//! results are written in that layout, so splitting and merging heads copies nothing.
//! Grouped-query attention: query head `h` reads key/value head `h / (H / Hkv)`.

use rayon::prelude::*;

use super::gemm::matmul_raw;
use super::math;
use super::reduce::{max, sum_map, sum_map2};
use super::simd::multiversion;

/// Query rows per block.
pub(super) const ROWS: usize = 64;

/// A strided `[B, H, T, D]` tensor with unit stride along `D`.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    /// `[B, H, T, D]`.
    pub shape: [usize; 4],
    /// Element strides of `B`, `H`, `T` (`D`'s is 1).
    pub strides: [usize; 3],
    /// Offset of element `(0, 0, 0, 0)`.
    pub offset: usize,
}

impl Heads {
    /// The `[B, H, T, D]` view of a contiguous `[B, T, H, D]` buffer.
    pub fn token_major(shape: [usize; 4]) -> Self {
        let [_, h, t, d] = shape;
        Self {
            shape,
            strides: [t * h * d, d, h * d],
            offset: 0,
        }
    }

    /// Index of `(b, h, t, 0)`.
    pub(super) fn at(&self, b: usize, h: usize, t: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1] + t * self.strides[2]
    }

    /// The highest index addressed, plus one.
    pub(super) fn extent(&self) -> usize {
        let [b, h, t, d] = self.shape;
        if b * h * t * d == 0 {
            return self.offset;
        }
        self.at(b - 1, h - 1, t - 1) + d
    }
}

pub use crate::kernels::params::KeyPrefix;

/// A pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(super) struct Shared(pub(super) *mut f32);
// SAFETY: every use writes elements no other task touches (see the call sites).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    pub(super) fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers stay within the buffer they took the pointer from.
        unsafe { self.0.add(i) }
    }
}

multiversion! {
    /// Softmax of `s` rows (`[rows, keys]`; row `i` is query row `r0 + i`, which sees the keys
    /// of `prefix`) scaled by `scale`; hidden keys get 0. Writes each row's log-sum-exp (of
    /// the scaled scores).
    fn softmax_rows(s: &mut [f32], keys: usize, r0: usize, prefix: KeyPrefix, scale: f32, lse: &mut [f32]) {
        for (i, row) in s.chunks_exact_mut(keys).enumerate() {
            let seen = prefix.seen(r0 + i).min(keys);
            let (head, hidden) = row.split_at_mut(seen);
            // Keys before the window get 0, like those after the row's own position.
            let (before, vis) = head.split_at_mut(prefix.first(r0 + i).min(seen));
            before.fill(0.0);
            let m = max(vis) * scale;
            // Exponentials first, then their sum: one loop doing both would not vectorise.
            for x in vis.iter_mut() {
                *x = math::exp(*x * scale - m);
            }
            let sum = sum_map(vis, |x| x);
            let inv = 1.0 / sum;
            for x in vis.iter_mut() {
                *x *= inv;
            }
            hidden.fill(0.0);
            lse[i] = m + sum.ln();
        }
    }
}

/// Query rows up to this many use dot products instead of gemm.
const FEW_ROWS: usize = 4;

/// The log-sum-exp slots of `rows` rows from `start`.
fn lse_rows_of<'a>(lse: Shared, start: usize, rows: usize) -> &'a mut [f32] {
    // SAFETY: callers own rows start..start + rows of the buffer behind `lse` (one task per
    // block of rows) and the buffer outlives the parallel loop.
    unsafe { std::slice::from_raw_parts_mut(lse.at(start), rows) }
}

multiversion! {
    /// `s[i, j] = q_i · k_j` for `rows` query rows and keys `0..end` (rows of stride `rs`).
    fn scores_by_dots(q: (&[f32], usize), rows: usize, k: (&[f32], usize), d: usize, end: usize, s: &mut [f32]) {
        for i in 0..rows {
            let qi = &q.0[i * q.1..i * q.1 + d];
            for j in 0..end {
                s[i * end + j] = sum_map2(qi, &k.0[j * k.1..j * k.1 + d], |a, b| a * b);
            }
        }
    }
}

multiversion! {
    /// `y_i = Σ_j p[i, j]·v_j` for `rows` rows over values `0..end`.
    fn weighted_values(p: &[f32], rows: usize, end: usize, v: (&[f32], usize), d: usize, y: &mut [f32]) {
        for i in 0..rows {
            let yi = &mut y[i * d..(i + 1) * d];
            for j in 0..end {
                let w = p[i * end + j];
                for (a, &b) in yi.iter_mut().zip(&v.0[j * v.1..j * v.1 + d]) {
                    *a += w * b;
                }
            }
        }
    }
}

/// `out = softmax(q·kᵀ·scale)·v` with the keys of `prefix` visible to each row; `out` is
/// written through its view. Returns the log-sum-exp of each row, `[B, H, R]`.
pub fn forward(
    data: (&[f32], &[f32], &[f32]),
    views: (Heads, Heads, Heads),
    prefix: KeyPrefix,
    scale: f32,
    out: (&mut [f32], Heads),
) -> Vec<f32> {
    let (q, k, v) = views;
    let [b, h, t, d] = q.shape;
    let (group, keys) = (h / k.shape[1], k.shape[2]);
    assert!(data.0.len() >= q.extent() && data.1.len() >= k.extent() && data.2.len() >= v.extent());
    let (out, o) = out;
    assert!(out.len() >= o.extent() && o.shape == q.shape);
    let mut lse = vec![0.0f32; b * h * t];
    let (out_p, lse_p) = (Shared(out.as_mut_ptr()), Shared(lse.as_mut_ptr()));
    let blocks = t.div_ceil(ROWS);
    (0..b * h * blocks).into_par_iter().for_each(|task| {
        let (bh, blk) = (task / blocks, task % blocks);
        let (bi, hi) = (bh / h, bh % h);
        let (r0, r1) = (blk * ROWS, ((blk + 1) * ROWS).min(t));
        let (rows, end) = (r1 - r0, prefix.keys_for(r0, r1).min(keys));
        let mut s = vec![0.0f32; rows * end];
        let (qp, kp, vp) = (
            &data.0[q.at(bi, hi, r0)..],
            &data.1[k.at(bi, hi / group, 0)..],
            &data.2[v.at(bi, hi / group, 0)..],
        );
        let lse_rows = lse_rows_of(lse_p, bh * t + r0, rows);
        if rows <= FEW_ROWS {
            // Decoding: dot products and weighted sums read each key and value once; a gemm
            // would first pack (copy) them.
            let mut y = vec![0.0f32; rows * d];
            scores_by_dots((qp, q.strides[2]), rows, (kp, k.strides[2]), d, end, &mut s);
            softmax_rows(&mut s, end, r0, prefix, scale, lse_rows);
            weighted_values(&s, rows, end, (vp, v.strides[2]), d, &mut y);
            for (i, row) in y.chunks_exact(d).enumerate() {
                // SAFETY: row r0 + i of head h of `out`, written by this task only.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(out_p.at(o.at(bi, hi, r0 + i)), d) };
                dst.copy_from_slice(row);
            }
            return;
        }
        // SAFETY: the views' extents were checked against the slices; `s` is local; task
        // (b, h, block) writes rows r0..r1 of head h only, of `out` and of `lse`.
        unsafe {
            matmul_raw(
                rows,
                d,
                end,
                (s.as_mut_ptr(), end, 1),
                false,
                (qp.as_ptr(), q.strides[2], 1),
                (kp.as_ptr(), 1, k.strides[2]),
            );
            softmax_rows(&mut s, end, r0, prefix, scale, lse_rows);
            matmul_raw(
                rows,
                end,
                d,
                (out_p.at(o.at(bi, hi, r0)), o.strides[2], 1),
                false,
                (s.as_ptr(), end, 1),
                (vp.as_ptr(), v.strides[2], 1),
            );
        }
    });
    lse
}
