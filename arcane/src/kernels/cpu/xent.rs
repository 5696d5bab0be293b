//! Cross-entropy over the vocabulary head, fused with the head's matmul and computed in
//! chunks of rows, so that the `[N, V]` logits and their gradient never exist at once (as in
//! Liger-Kernel's fused linear cross-entropy, Hsu et al. 2024, arXiv:2410.10989).
//!
//! For each chunk of `R` rows: `logits = h·Wᵀ` (`[R, V]`), then per row the log-sum-exp and
//! `loss = lse - logit[target]`; with gradients, `p = softmax(logits)`, `p[target] -= 1`,
//! `p /= N` (the mean), then `dh = p·W` and `dW += pᵀ·h`. The matmuls are those of the unfused
//! head; the memory is `R·V` floats instead of several `N·V`.

use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use super::math;
use super::reduce::{max, sum_map};
use super::simd::multiversion;

/// Logits per chunk (128 MiB): `dW` is read and written once per chunk and the head weight is
/// packed twice per chunk, so chunks should be long; measured on gpt2-124m (B 1, T 1024), 4
/// chunks of 256 rows made the step 5% slower than 2 of 512, and one of 1024 no faster.
const CHUNK_ELEMS: usize = 1 << 25;
/// Rows per rayon task inside a chunk.
const ROWS_PER_TASK: usize = 8;

pub use crate::kernels::params::HeadLayout;

/// The result of [`linear_cross_entropy`].
pub struct XentResult {
    /// Mean loss over the rows.
    pub loss: f32,
    /// `d loss / d h` `[N, C]` and `d loss / d W` (in `W`'s layout), when asked for.
    pub grads: Option<(Vec<f32>, Vec<f32>)>,
}

multiversion! {
    /// Loss of each row of `logits` (`[rows, V]`); with `grad_scale`, turns each row into
    /// `(softmax - onehot)·grad_scale`. One exponential per logit.
    fn rows_loss(logits: &mut [f32], targets: &[usize], v: usize, grad_scale: Option<f32>, losses: &mut [f32]) {
        for ((row, &t), loss) in logits.chunks_exact_mut(v).zip(targets).zip(losses.iter_mut()) {
            let (m, target) = (max(row), row[t]);
            for x in row.iter_mut() {
                *x = math::exp(*x - m);
            }
            let sum = sum_map(row, |x| x);
            *loss = m + sum.ln() - target;
            if let Some(s) = grad_scale {
                let f = s / sum;
                for x in row.iter_mut() {
                    *x *= f;
                }
                row[t] -= s;
            }
        }
    }
}

/// Mean cross-entropy of `targets` (`[N]`, each below `V`) under `h·Wᵀ`, with `h` `[N, C]`
/// row-major and `W` of `layout`; with `grad`, also its gradients.
pub fn linear_cross_entropy(
    h: &[f32],
    w: &[f32],
    layout: HeadLayout,
    targets: &[usize],
    c: usize,
    v: usize,
    grad: bool,
) -> XentResult {
    chunked(h, w, layout, targets, (c, v), grad, CHUNK_ELEMS)
}

/// [`linear_cross_entropy`] with chunks of at most `chunk_elems` logits.
fn chunked(
    h: &[f32],
    w: &[f32],
    layout: HeadLayout,
    targets: &[usize],
    (c, v): (usize, usize),
    grad: bool,
    chunk_elems: usize,
) -> XentResult {
    let n = targets.len();
    assert_eq!(h.len(), n * c, "hidden states must be [N, C]");
    assert_eq!(w.len(), v * c, "head weight must hold V·C values");
    assert!(
        targets.iter().all(|&t| t < v),
        "target id beyond the vocabulary"
    );
    let (w_t, w_plain) = match layout {
        // logits = h·Wᵀ reads W [V, C] transposed; dh = p·W reads it as it is.
        HeadLayout::VocabMajor => (MatRef::transposed(w, c), MatRef::rows(w, c)),
        HeadLayout::ChannelMajor => (MatRef::rows(w, v), MatRef::transposed(w, v)),
    };
    let chunks = (n * v).div_ceil(chunk_elems.max(v)).max(1);
    let rows = n.div_ceil(chunks).max(1);
    let mut logits = vec![0.0f32; rows * v];
    let mut losses = vec![0.0f32; n];
    let mut grads = grad.then(|| (vec![0.0f32; n * c], vec![0.0f32; v * c]));
    let scale = 1.0 / n as f32;
    for start in (0..n).step_by(rows) {
        let r = rows.min(n - start);
        let hc = &h[start * c..(start + r) * c];
        let lg = &mut logits[..r * v];
        matmul(lg, false, MatRef::rows(hc, c), w_t, r, c, v);
        let tg = &targets[start..start + r];
        let ls = &mut losses[start..start + r];
        let s = grad.then_some(scale);
        lg.par_chunks_mut(ROWS_PER_TASK * v)
            .zip(
                tg.par_chunks(ROWS_PER_TASK)
                    .zip(ls.par_chunks_mut(ROWS_PER_TASK)),
            )
            .for_each(|(lg, (tg, ls))| rows_loss(lg, tg, v, s, ls));
        if let Some((dh, dw)) = grads.as_mut() {
            let p = MatRef::rows(lg, v);
            matmul(
                &mut dh[start * c..(start + r) * c],
                false,
                p,
                w_plain,
                r,
                v,
                c,
            );
            let first = start == 0;
            match layout {
                HeadLayout::VocabMajor => matmul(
                    dw,
                    !first,
                    MatRef::transposed(lg, v),
                    MatRef::rows(hc, c),
                    v,
                    r,
                    c,
                ),
                HeadLayout::ChannelMajor => {
                    matmul(dw, !first, MatRef::transposed(hc, c), p, c, r, v)
                }
            }
        }
    }
    // Summed in f64 in row order: the same on any thread count.
    let loss = (losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64) as f32;
    XentResult { loss, grads }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unfused computation in f64.
    fn reference(
        h: &[f32],
        w: &[f32],
        t: &[usize],
        c: usize,
        v: usize,
    ) -> (f64, Vec<f64>, Vec<f64>) {
        let n = t.len();
        let (mut loss, mut dh, mut dw) = (0.0, vec![0.0; n * c], vec![0.0; v * c]);
        for i in 0..n {
            let logits: Vec<f64> = (0..v)
                .map(|j| {
                    (0..c)
                        .map(|k| h[i * c + k] as f64 * w[j * c + k] as f64)
                        .sum()
                })
                .collect();
            let m = logits.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            loss += (lse - logits[t[i]]) / n as f64;
            for j in 0..v {
                let p = ((logits[j] - lse).exp() - (j == t[i]) as u8 as f64) / n as f64;
                for k in 0..c {
                    dh[i * c + k] += p * w[j * c + k] as f64;
                    dw[j * c + k] += p * h[i * c + k] as f64;
                }
            }
        }
        (loss, dh, dw)
    }

    #[test]
    fn chunked_loss_and_gradients_equal_the_unfused_ones() {
        // Chunks of at most 100 rows, so that dW accumulates over three of them.
        let (n, c, v) = (237, 12, 45);
        let budget = 100 * v;
        let h: Vec<f32> = (0..n * c)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w: Vec<f32> = (0..v * c)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 30.0)
            .collect();
        let t: Vec<usize> = (0..n).map(|i| i * 7 % v).collect();
        let (loss, dh, dw) = reference(&h, &w, &t, c, v);
        let out = chunked(&h, &w, HeadLayout::VocabMajor, &t, (c, v), true, budget);
        assert!(
            (out.loss as f64 - loss).abs() < 1e-5,
            "{} vs {loss}",
            out.loss
        );
        let (gh, gw) = out.grads.expect("gradients");
        let close =
            |a: &[f32], b: &[f64]| a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-6);
        assert!(close(&gh, &dh) && close(&gw, &dw));
        // The same weight stored [C, V].
        let wt: Vec<f32> = (0..c * v).map(|i| w[(i % v) * c + i / v]).collect();
        let out = chunked(&h, &wt, HeadLayout::ChannelMajor, &t, (c, v), true, budget);
        let (gh, gwt) = out.grads.expect("gradients");
        let dwt: Vec<f64> = (0..c * v).map(|i| dw[(i % v) * c + i / v]).collect();
        assert!(close(&gh, &dh) && close(&gwt, &dwt));
    }
}
