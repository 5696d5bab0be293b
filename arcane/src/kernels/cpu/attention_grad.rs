//! The backward pass of causal attention (see `attention.rs`): per key/value head, each block
//! of query rows recomputes its scores and probabilities from the saved log-sum-exp, then
//! accumulates `dV += Pᵀ·dO`, `dK += dSᵀ·Q` and writes `dQ = dS·K`, with
//! `dS = P ∘ (dP - δ)`, `dP = dO·Vᵀ` and `δ = rowsum(dO ∘ O)` (Dao et al. 2022, Alg. 4).

use rayon::prelude::*;

use super::attention::{Heads, Shared, ROWS};
use super::gemm::matmul_raw;
use super::math;
use super::reduce::sum_map2;
use super::simd::multiversion;

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
    use crate::kernels::cpu::attention::{forward, KeyPrefix};

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
        let prefix = KeyPrefix::causal(t);
        let lse = forward((&qd, &kd, &vd), (qv, kv, kv), prefix, scale, (&mut out, qv));
        let gd = gen(b * t * h * d, 17);
        let saved = Saved {
            out: &out,
            out_view: qv,
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
