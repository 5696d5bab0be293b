//! LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019) over the rows of a
//! `[N, C]` matrix, forward and backward in one pass each, rows spread over cores.
//!
//! Forward: `x̂ = (x - μ)·r` (LayerNorm) or `x̂ = x·r` (RMSNorm) with `r = 1/sqrt(σ² + ε)`
//! (`σ²` the biased variance, or the mean square), `y = x̂·g + b`. Backward, with `ĝ = dy·g`:
//! `dx = r·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂))` (RMSNorm drops `mean(ĝ)`), `dg = Σ_rows dy·x̂`,
//! `db = Σ_rows dy`.

use rayon::prelude::*;

use super::reduce::{sum_map, sum_map2};
use super::simd::multiversion;

/// Rows per task: a fixed number, so that the gradient sums of `g` and `b` are added in the
/// same order on any number of threads (bitwise-reproducible runs and resumes).
const ROWS_PER_TASK: usize = 16;

/// What the forward pass keeps for the backward one.
pub struct NormStats {
    /// Row means `[N]` (zero for RMSNorm).
    pub mean: Vec<f32>,
    /// Row reciprocal standard deviations (or RMS) `[N]`.
    pub rstd: Vec<f32>,
}

multiversion! {
    fn forward_rows(x: &[f32], g: &[f32], b: Option<&[f32]>, eps: f32, rms: bool, y: &mut [f32], mean: &mut [f32], rstd: &mut [f32]) {
        let c = g.len();
        for (row, (x, y)) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)).enumerate() {
            let mu = if rms { 0.0 } else { sum_map(x, |v| v) / c as f32 };
            let var = sum_map(x, |v| (v - mu) * (v - mu)) / c as f32;
            let r = 1.0 / (var + eps).sqrt();
            mean[row] = mu;
            rstd[row] = r;
            match b {
                Some(b) => {
                    for i in 0..c {
                        y[i] = (x[i] - mu) * r * g[i] + b[i];
                    }
                }
                None => {
                    for i in 0..c {
                        y[i] = (x[i] - mu) * r * g[i];
                    }
                }
            }
        }
    }
}

/// `y = norm(x)·g + b` for rows of width `g.len()`; returns the statistics for [`backward`].
pub fn forward(
    x: &[f32],
    g: &[f32],
    b: Option<&[f32]>,
    eps: f32,
    rms: bool,
    y: &mut [f32],
) -> NormStats {
    let c = g.len();
    let n = x.len() / c;
    let (mut mean, mut rstd) = (vec![0.0; n], vec![0.0; n]);
    let step = ROWS_PER_TASK * c;
    y.par_chunks_mut(step)
        .zip(x.par_chunks(step))
        .zip(
            mean.par_chunks_mut(ROWS_PER_TASK)
                .zip(rstd.par_chunks_mut(ROWS_PER_TASK)),
        )
        .for_each(|((y, x), (m, r))| forward_rows(x, g, b, eps, rms, y, m, r));
    NormStats { mean, rstd }
}

multiversion! {
    fn backward_rows(x: &[f32], g: &[f32], dy: &[f32], mean: &[f32], rstd: &[f32], rms: bool, dx: &mut [f32], dg: &mut [f32], db: &mut [f32]) {
        let c = g.len();
        let rows = x.chunks_exact(c).zip(dy.chunks_exact(c)).zip(dx.chunks_exact_mut(c));
        for (row, ((x, dy), dx)) in rows.enumerate() {
            let (mu, r) = (mean[row], rstd[row]);
            // mean(ĝ) and mean(ĝ·x̂), with ĝ = dy·g and x̂ = (x - μ)·r.
            let mut sum_dg = 0.0;
            if !rms {
                sum_dg = sum_map2(dy, g, |d, w| d * w);
            }
            let mut dot = [0f32; 16];
            let body = c - c % 16;
            for j in (0..body).step_by(16) {
                for k in 0..16 {
                    dot[k] += dy[j + k] * g[j + k] * ((x[j + k] - mu) * r);
                }
            }
            let mut sum_dgx: f32 = (body..c).map(|i| dy[i] * g[i] * ((x[i] - mu) * r)).sum();
            for v in dot {
                sum_dgx += v;
            }
            let (m1, m2) = (sum_dg / c as f32, sum_dgx / c as f32);
            for i in 0..c {
                let xh = (x[i] - mu) * r;
                dx[i] = r * (dy[i] * g[i] - m1 - xh * m2);
                dg[i] += dy[i] * xh;
                db[i] += dy[i];
            }
        }
    }
}

/// Gradients of [`forward`]: returns `(dx [N, C], dg [C], db [C])` (`db` is computed for
/// RMSNorm too; callers without a bias drop it).
pub fn backward(
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    stats: &NormStats,
    rms: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = g.len();
    let mut dx = vec![0.0; x.len()];
    let step = ROWS_PER_TASK * c;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(step)
        .zip(x.par_chunks(step).zip(dy.par_chunks(step)))
        .zip(
            stats
                .mean
                .par_chunks(ROWS_PER_TASK)
                .zip(stats.rstd.par_chunks(ROWS_PER_TASK)),
        )
        .map(|((dx, (x, dy)), (m, r))| {
            let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
            backward_rows(x, g, dy, m, r, rms, dx, &mut dg, &mut db);
            (dg, db)
        })
        .collect();
    let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
    for (pg, pb) in &partials {
        for i in 0..c {
            dg[i] += pg[i];
            db[i] += pb[i];
        }
    }
    (dx, dg, db)
}
