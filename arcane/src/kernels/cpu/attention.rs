//! Causal self-attention forward and backward on strided heads, in the manner of
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
const ROWS: usize = 64;

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
    fn at(&self, b: usize, h: usize, t: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1] + t * self.strides[2]
    }

    /// The highest index addressed, plus one.
    fn extent(&self) -> usize {
        let [b, h, t, d] = self.shape;
        if b * h * t * d == 0 {
            return self.offset;
        }
        self.at(b - 1, h - 1, t - 1) + d
    }
}

/// A pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every use writes elements no other task touches (see the call sites).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers stay within the buffer they took the pointer from.
        unsafe { self.0.add(i) }
    }
}

multiversion! {
    /// Softmax of `s` rows (`[rows, keys]`, row `i` sees keys `0..=first + i`) scaled by
    /// `scale`; hidden keys get 0. Writes each row's log-sum-exp (of the scaled scores).
    fn softmax_rows(s: &mut [f32], keys: usize, first: usize, scale: f32, lse: &mut [f32]) {
        for (i, row) in s.chunks_exact_mut(keys).enumerate() {
            let seen = (first + i + 1).min(keys);
            let (vis, hidden) = row.split_at_mut(seen);
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

/// `out = softmax(q·kᵀ·scale, causal)·v`; returns the log-sum-exp of each row, `[B, H, T]`.
/// `out` is `[B, T, H, D]` (contiguous).
pub fn forward(
    data: (&[f32], &[f32], &[f32]),
    views: (Heads, Heads, Heads),
    scale: f32,
    out: &mut [f32],
) -> Vec<f32> {
    let (q, k, v) = views;
    let [b, h, t, d] = q.shape;
    let group = h / k.shape[1];
    assert!(data.0.len() >= q.extent() && data.1.len() >= k.extent() && data.2.len() >= v.extent());
    assert_eq!(out.len(), b * t * h * d);
    let o = Heads::token_major([b, h, t, d]);
    let mut lse = vec![0.0f32; b * h * t];
    let (out_p, lse_p) = (Shared(out.as_mut_ptr()), Shared(lse.as_mut_ptr()));
    let blocks = t.div_ceil(ROWS);
    (0..b * h * blocks).into_par_iter().for_each(|task| {
        let (bh, blk) = (task / blocks, task % blocks);
        let (bi, hi) = (bh / h, bh % h);
        let (r0, r1) = (blk * ROWS, ((blk + 1) * ROWS).min(t));
        let rows = r1 - r0;
        let mut s = vec![0.0f32; rows * r1];
        let (qp, kp, vp) = (
            &data.0[q.at(bi, hi, r0)..],
            &data.1[k.at(bi, hi / group, 0)..],
            &data.2[v.at(bi, hi / group, 0)..],
        );
        // SAFETY: the views' extents were checked against the slices; `s` is local; task
        // (b, h, block) writes rows r0..r1 of head h only, of `out` and of `lse`.
        unsafe {
            matmul_raw(
                rows,
                d,
                r1,
                (s.as_mut_ptr(), r1, 1),
                false,
                (qp.as_ptr(), q.strides[2], 1),
                (kp.as_ptr(), 1, k.strides[2]),
            );
            let lse_rows = std::slice::from_raw_parts_mut(lse_p.at(bh * t + r0), rows);
            softmax_rows(&mut s, r1, r0, scale, lse_rows);
            matmul_raw(
                rows,
                r1,
                d,
                (out_p.at(o.at(bi, hi, r0)), o.strides[2], 1),
                false,
                (s.as_ptr(), r1, 1),
                (vp.as_ptr(), v.strides[2], 1),
            );
        }
    });
    lse
}

multiversion! {
    /// From scores `s` (`[rows, keys]`) and `dP` in `dp`: `P` into `s` and `dS·scale` into `dp`,
    /// with `dS = P ∘ (dP - δ)`, `δ` per row; hidden keys get 0.
    fn softmax_grad_rows(s: &mut [f32], dp: &mut [f32], keys: usize, first: usize, scale: f32, lse: &[f32], delta: &[f32]) {
        for (i, (srow, dprow)) in s.chunks_exact_mut(keys).zip(dp.chunks_exact_mut(keys)).enumerate() {
            let seen = (first + i + 1).min(keys);
            let (l, dl) = (lse[i], delta[i]);
            for j in 0..seen {
                let p = math::exp(srow[j] * scale - l);
                srow[j] = p;
                dprow[j] = p * (dprow[j] - dl) * scale;
            }
            srow[seen..].fill(0.0);
            dprow[seen..].fill(0.0);
        }
    }
}

/// The inputs of [`backward`] besides `q`, `k`, `v`: the forward's output, its log-sum-exp,
/// and the output's gradient.
pub struct Saved<'a> {
    /// Forward output.
    pub out: &'a [f32],
    /// Its `[B, H, T, D]` view.
    pub out_view: Heads,
    /// `[B, H, T]`.
    pub lse: &'a [f32],
    /// Gradient of the output, any `[B, H, T, D]` view.
    pub grad: &'a [f32],
    /// Its view.
    pub grad_view: Heads,
}

/// Gradients `(dq, dk, dv)`, each contiguous `[B, T, heads, D]` (viewed `[B, heads, T, D]`).
pub fn backward(
    data: (&[f32], &[f32], &[f32]),
    views: (Heads, Heads, Heads),
    scale: f32,
    saved: Saved,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (q, k, v) = views;
    let [b, h, t, d] = q.shape;
    let hkv = k.shape[1];
    let group = h / hkv;
    let o = Heads::token_major([b, h, t, d]);
    let (g, ov) = (saved.grad_view, saved.out_view);
    assert!(saved.grad.len() >= g.extent() && saved.out.len() >= ov.extent());
    // δ = rowsum(dO ∘ O), [B, H, T].
    let mut delta = vec![0.0f32; b * h * t];
    delta.par_chunks_mut(t).enumerate().for_each(|(bh, rows)| {
        let (bi, hi) = (bh / h, bh % h);
        for (ti, r) in rows.iter_mut().enumerate() {
            let (gi, oi) = (g.at(bi, hi, ti), ov.at(bi, hi, ti));
            *r = sum_map2(&saved.grad[gi..gi + d], &saved.out[oi..oi + d], |a, b| {
                a * b
            });
        }
    });
    let (mut dq, mut dk, mut dv) = (
        vec![0.0f32; b * t * h * d],
        vec![0.0f32; b * t * hkv * d],
        vec![0.0f32; b * t * hkv * d],
    );
    let kv_out = Heads::token_major([b, hkv, t, d]);
    let (dq_p, dk_p, dv_p) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    (0..b * hkv).into_par_iter().for_each(|task| {
        let (bi, gi) = (task / hkv, task % hkv);
        let (kp, vp) = (&data.1[k.at(bi, gi, 0)..], &data.2[v.at(bi, gi, 0)..]);
        let (dkp, dvp) = (dk_p.at(kv_out.at(bi, gi, 0)), dv_p.at(kv_out.at(bi, gi, 0)));
        let mut s = vec![0.0f32; ROWS * t];
        let mut dp = vec![0.0f32; ROWS * t];
        for hi in gi * group..(gi + 1) * group {
            for r0 in (0..t).step_by(ROWS) {
                let (r1, rows) = ((r0 + ROWS).min(t), (r0 + ROWS).min(t) - r0);
                let (s, dp) = (&mut s[..rows * r1], &mut dp[..rows * r1]);
                let qp = &data.0[q.at(bi, hi, r0)..];
                let gp = &saved.grad[g.at(bi, hi, r0)..];
                let row = (bi * h + hi) * t + r0;
                // SAFETY: extents checked above; this task alone writes the key/value head gi
                // of dk, dv and the query heads of its group in dq.
                unsafe {
                    matmul_raw(
                        rows,
                        d,
                        r1,
                        (s.as_mut_ptr(), r1, 1),
                        false,
                        (qp.as_ptr(), q.strides[2], 1),
                        (kp.as_ptr(), 1, k.strides[2]),
                    );
                    matmul_raw(
                        rows,
                        d,
                        r1,
                        (dp.as_mut_ptr(), r1, 1),
                        false,
                        (gp.as_ptr(), g.strides[2], 1),
                        (vp.as_ptr(), 1, v.strides[2]),
                    );
                    softmax_grad_rows(
                        s,
                        dp,
                        r1,
                        r0,
                        scale,
                        &saved.lse[row..row + rows],
                        &delta[row..row + rows],
                    );
                    // dV[0..r1] += Pᵀ·dO, dK[0..r1] += dSᵀ·Q, dQ = dS·K.
                    matmul_raw(
                        r1,
                        rows,
                        d,
                        (dvp, kv_out.strides[2], 1),
                        true,
                        (s.as_ptr(), 1, r1),
                        (gp.as_ptr(), g.strides[2], 1),
                    );
                    matmul_raw(
                        r1,
                        rows,
                        d,
                        (dkp, kv_out.strides[2], 1),
                        true,
                        (dp.as_ptr(), 1, r1),
                        (qp.as_ptr(), q.strides[2], 1),
                    );
                    matmul_raw(
                        rows,
                        r1,
                        d,
                        (dq_p.at(o.at(bi, hi, r0)), o.strides[2], 1),
                        false,
                        (dp.as_ptr(), r1, 1),
                        (kp.as_ptr(), k.strides[2], 1),
                    );
                }
            }
        }
    });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain attention in f64 with a finite-difference-free analytic backward.
    #[test]
    fn forward_and_backward_equal_the_plain_formulas() {
        let (b, h, hkv, t, d) = (2, 4, 2, 150, 8);
        let scale = 1.0 / (d as f32).sqrt();
        let gen = |n: usize, s: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * s) % 113) as f32 - 56.0) / 40.0)
                .collect()
        };
        // q in [B, T, H, D] memory; k, v in [B, T, Hkv, D].
        let (qd, kd, vd) = (
            gen(b * t * h * d, 7),
            gen(b * t * hkv * d, 11),
            gen(b * t * hkv * d, 13),
        );
        let (qv, kv) = (
            Heads::token_major([b, h, t, d]),
            Heads::token_major([b, hkv, t, d]),
        );
        let mut out = vec![0.0; b * t * h * d];
        let lse = forward((&qd, &kd, &vd), (qv, kv, kv), scale, &mut out);
        let gd = gen(b * t * h * d, 17);
        let saved = Saved {
            out: &out,
            lse: &lse,
            grad: &gd,
            grad_view: qv,
        };
        let (dq, dk, dv) = backward((&qd, &kd, &vd), (qv, kv, kv), scale, saved);
        let (mut rdq, mut rdk, mut rdv) = (
            vec![0f64; dq.len()],
            vec![0f64; dk.len()],
            vec![0f64; dv.len()],
        );
        let (qi, ki) = (
            |bi, hi, ti| qv.at(bi, hi, ti),
            |bi, hi, ti| kv.at(bi, hi, ti),
        );
        for bi in 0..b {
            for hi in 0..h {
                let gi = hi / (h / hkv);
                for i in 0..t {
                    let s: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..d)
                                .map(|x| (qd[qi(bi, hi, i) + x] * kd[ki(bi, gi, j) + x]) as f64)
                                .sum::<f64>()
                                * scale as f64
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / z).collect();
                    assert!((lse[(bi * h + hi) * t + i] as f64 - (m + z.ln())).abs() < 1e-4);
                    let go = &gd[qi(bi, hi, i)..qi(bi, hi, i) + d];
                    let dp: Vec<f64> = (0..=i)
                        .map(|j| (0..d).map(|x| (go[x] * vd[ki(bi, gi, j) + x]) as f64).sum())
                        .collect();
                    let delta: f64 = (0..=i).map(|j| p[j] * dp[j]).sum();
                    for x in 0..d {
                        let o: f64 = (0..=i).map(|j| p[j] * vd[ki(bi, gi, j) + x] as f64).sum();
                        assert!((out[qi(bi, hi, i) + x] as f64 - o).abs() < 1e-5);
                    }
                    for j in 0..=i {
                        let ds = p[j] * (dp[j] - delta) * scale as f64;
                        for x in 0..d {
                            rdq[qi(bi, hi, i) + x] += ds * kd[ki(bi, gi, j) + x] as f64;
                            rdk[ki(bi, gi, j) + x] += ds * qd[qi(bi, hi, i) + x] as f64;
                            rdv[ki(bi, gi, j) + x] += p[j] * go[x] as f64;
                        }
                    }
                }
            }
        }
        let close =
            |a: &[f32], r: &[f64]| a.iter().zip(r).all(|(x, y)| (*x as f64 - y).abs() < 1e-4);
        assert!(close(&dq, &rdq) && close(&dk, &rdk) && close(&dv, &rdv));
    }
}
