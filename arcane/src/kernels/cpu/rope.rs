//! Rotary position embedding (Su et al. 2021) in the rotate-half convention, applied to
//! strided `[B, H, T, D]` heads and written token-major (`[B, T, H, D]`), where attention reads
//! it in place: `out = x·cos + swap_halves(x)·sin_signed`, with `sin_signed` the sine table
//! whose first half is negated (see `model/rope.rs`). The backward pass is the rotation by the
//! opposite angles, `negate = true`.

use rayon::prelude::*;

use super::attention::Heads;
use super::simd::multiversion;

multiversion! {
    /// Rotates one head vector `x` (`[D]`) into `y` with tables `cos`, `sin` of width `D`.
    fn rotate(x: &[f32], cos: &[f32], sin: &[f32], negate: bool, y: &mut [f32]) {
        let h = x.len() / 2;
        let sign = if negate { -1.0 } else { 1.0 };
        for i in 0..h {
            y[i] = x[i] * cos[i] + x[i + h] * sin[i] * sign;
            y[i + h] = x[i + h] * cos[i + h] + x[i] * sin[i + h] * sign;
        }
    }
}

/// RoPE of `x` (view `xv`, positions `start..start + T`) with tables `[max_seq, D]`; returns
/// a token-major `[B, T, H, D]` buffer.
pub fn apply(
    x: &[f32],
    xv: Heads,
    cos: &[f32],
    sin: &[f32],
    start: usize,
    negate: bool,
) -> Vec<f32> {
    let [b, h, t, d] = xv.shape;
    assert!(
        cos.len() >= (start + t) * d && sin.len() >= (start + t) * d,
        "RoPE table too short"
    );
    assert!(x.len() >= xv.extent());
    let mut out = vec![0.0f32; b * t * h * d];
    out.par_chunks_mut(h * d).enumerate().for_each(|(bt, row)| {
        let (bi, ti) = (bt / t, bt % t);
        let p = (start + ti) * d;
        let (c, s) = (&cos[p..p + d], &sin[p..p + d]);
        for (hi, y) in row.chunks_exact_mut(d).enumerate() {
            let at = xv.at(bi, hi, ti);
            rotate(&x[at..at + d], c, s, negate, y);
        }
    });
    out
}
