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
    /// with `dS = P ∘ (dP - δ)`, `δ` per row; hidden keys (after the row's position, or
    /// before its sliding window of `window` keys) get 0.
    fn softmax_grad_rows(s: &mut [f32], dp: &mut [f32], keys: usize, first: usize, window: usize, scale: f32, lse: &[f32], delta: &[f32]) {
        for (i, (srow, dprow)) in s.chunks_exact_mut(keys).zip(dp.chunks_exact_mut(keys)).enumerate() {
            let seen = (first + i + 1).min(keys);
            let lo = (first + i + 1).saturating_sub(window).min(seen);
            let (l, dl) = (lse[i], delta[i]);
            srow[..lo].fill(0.0);
            dprow[..lo].fill(0.0);
            for j in lo..seen {
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
    (scale, window): (f32, usize),
    saved: Saved,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (q, k, _) = views;
    let [b, h, t, d] = q.shape;
    let hkv = k.shape[1];
    assert!(saved.grad.len() >= saved.grad_view.extent());
    assert!(saved.out.len() >= saved.out_view.extent());
    let delta = row_deltas(&saved, [b, h, t, d]);
    let mut dq = vec![0.0f32; b * t * h * d];
    let (mut dk, mut dv) = (vec![0.0f32; b * t * hkv * d], vec![0.0f32; b * t * hkv * d]);
    let ctx = Ctx {
        data,
        views,
        scale,
        window,
        saved: &saved,
        delta: &delta,
        dq: Shared(dq.as_mut_ptr()),
        dk: Shared(dk.as_mut_ptr()),
        dv: Shared(dv.as_mut_ptr()),
    };
    (0..b * hkv).into_par_iter().for_each(|task| {
        let (bi, gi) = (task / hkv, task % hkv);
        let (mut s, mut dp) = (vec![0.0f32; ROWS * t], vec![0.0f32; ROWS * t]);
        for hi in gi * (h / hkv)..(gi + 1) * (h / hkv) {
            for r0 in (0..t).step_by(ROWS) {
                // SAFETY: task (b, gi) alone writes key/value head gi of dk, dv and the query
                // heads of its group in dq.
                unsafe { ctx.block(bi, gi, hi, r0, &mut s, &mut dp) };
            }
        }
    });
    (dq, dk, dv)
}

/// `δ = rowsum(dO ∘ O)` `[B, H, T]`.
fn row_deltas(saved: &Saved, [b, h, t, d]: [usize; 4]) -> Vec<f32> {
    let (g, o) = (saved.grad_view, saved.out_view);
    let mut delta = vec![0.0f32; b * h * t];
    delta.par_chunks_mut(t).enumerate().for_each(|(bh, rows)| {
        let (bi, hi) = (bh / h, bh % h);
        for (ti, r) in rows.iter_mut().enumerate() {
            let (gi, oi) = (g.at(bi, hi, ti), o.at(bi, hi, ti));
            let (gr, or) = (&saved.grad[gi..gi + d], &saved.out[oi..oi + d]);
            *r = sum_map2(gr, or, |a, b| a * b);
        }
    });
    delta
}

/// What every block of the backward pass reads, and where it writes.
struct Ctx<'a> {
    data: (&'a [f32], &'a [f32], &'a [f32]),
    views: (Heads, Heads, Heads),
    scale: f32,
    /// The sliding window (`usize::MAX`: none).
    window: usize,
    saved: &'a Saved<'a>,
    delta: &'a [f32],
    dq: Shared,
    dk: Shared,
    dv: Shared,
}

impl Ctx<'_> {
    /// Query rows `r0..r0 + ROWS` of head `hi` (key/value head `gi`) of batch `bi`: recompute
    /// `P`, then `dV[0..r1] += Pᵀ·dO`, `dK[0..r1] += dSᵀ·Q`, `dQ = dS·K`.
    ///
    /// # Safety
    /// No other thread may write key/value head `gi` of `dk`, `dv` or head `hi` of `dq`.
    unsafe fn block(
        &self,
        bi: usize,
        gi: usize,
        hi: usize,
        r0: usize,
        s: &mut [f32],
        dp: &mut [f32],
    ) {
        let (q, k, v) = self.views;
        let g = self.saved.grad_view;
        let [_, h, t, d] = q.shape;
        let o = Heads::token_major(q.shape);
        let kv = Heads::token_major(k.shape);
        let r1 = (r0 + ROWS).min(t);
        let rows = r1 - r0;
        let (s, dp) = (&mut s[..rows * r1], &mut dp[..rows * r1]);
        let qp = self.data.0[q.at(bi, hi, r0)..].as_ptr();
        let kp = self.data.1[k.at(bi, gi, 0)..].as_ptr();
        let vp = self.data.2[v.at(bi, gi, 0)..].as_ptr();
        let gp = self.saved.grad[g.at(bi, hi, r0)..].as_ptr();
        let row = (bi * h + hi) * t + r0;
        let (qs, ks, vs, gs) = (q.strides[2], k.strides[2], v.strides[2], g.strides[2]);
        matmul_raw(
            rows,
            d,
            r1,
            (s.as_mut_ptr(), r1, 1),
            false,
            (qp, qs, 1),
            (kp, 1, ks),
        );
        matmul_raw(
            rows,
            d,
            r1,
            (dp.as_mut_ptr(), r1, 1),
            false,
            (gp, gs, 1),
            (vp, 1, vs),
        );
        let (lse, delta) = (
            &self.saved.lse[row..row + rows],
            &self.delta[row..row + rows],
        );
        softmax_grad_rows(s, dp, r1, r0, self.window, self.scale, lse, delta);
        let (dkp, dvp) = (self.dk.at(kv.at(bi, gi, 0)), self.dv.at(kv.at(bi, gi, 0)));
        let (s, dp) = (s.as_ptr(), dp.as_ptr());
        matmul_raw(
            r1,
            rows,
            d,
            (dvp, kv.strides[2], 1),
            true,
            (s, 1, r1),
            (gp, gs, 1),
        );
        matmul_raw(
            r1,
            rows,
            d,
            (dkp, kv.strides[2], 1),
            true,
            (dp, 1, r1),
            (qp, qs, 1),
        );
        let dqp = self.dq.at(o.at(bi, hi, r0));
        matmul_raw(
            rows,
            r1,
            d,
            (dqp, o.strides[2], 1),
            false,
            (dp, r1, 1),
            (kp, ks, 1),
        );
    }
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
        let (dq, dk, dv) = backward((&qd, &kd, &vd), (qv, kv, kv), (scale, usize::MAX), saved);
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
