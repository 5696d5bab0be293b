//! The AdamW update (Loshchilov & Hutter 2019) of one parameter tensor in a single pass, in
//! place: parameter, gradient and both moments are read once and written once, on every core.
//! The arithmetic is Burn's `AdamW` step, operation for operation.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::par::{chunk_len, MIN_PARALLEL};
use super::simd::multiversion;

pub use crate::kernels::params::AdamWStep;

/// One element: the new parameter, with the moments updated in place.
#[inline(always)]
fn element(p: f32, g: f32, m: &mut f32, v: &mut f32, s: AdamWStep) -> f32 {
    let mi = *m * s.beta_1 + g * (1.0 - s.beta_1);
    let vi = *v * s.beta_2 + g * g * (1.0 - s.beta_2);
    *m = mi;
    *v = vi;
    let delta = (mi / s.correction_1) / ((vi / s.correction_2).sqrt() + s.epsilon);
    p * s.decay - delta * s.lr
}

multiversion! {
    fn chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) {
        for i in 0..p.len() {
            p[i] = element(p[i], g[i], &mut m[i], &mut v[i], s);
        }
    }
}

multiversion! {
    fn chunk_into(p: &[f32], out: &mut [MaybeUninit<f32>], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) {
        for i in 0..p.len() {
            out[i].write(element(p[i], g[i], &mut m[i], &mut v[i], s));
        }
    }
}

/// Applies one AdamW step to `p` with gradient `g`, updating the moments `m` and `v` (zeros
/// before the first step).
pub fn step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "AdamW: length mismatch"
    );
    if n < MIN_PARALLEL {
        return chunk(p, g, m, v, s);
    }
    let c = chunk_len(n, MIN_PARALLEL / 2, 16);
    p.par_chunks_mut(c)
        .zip(g.par_chunks(c))
        .zip(m.par_chunks_mut(c).zip(v.par_chunks_mut(c)))
        .for_each(|((p, g), (m, v))| chunk(p, g, m, v, s));
}

/// Like [`step`] for a parameter that others still read: the updated parameter goes to a new
/// buffer in the same pass (cheaper than copying it first).
pub fn step_into(p: &[f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) -> Vec<f32> {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "AdamW: length mismatch"
    );
    let mut out = Vec::with_capacity(n);
    let c = chunk_len(n, MIN_PARALLEL / 2, 16);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(c)
        .zip(p.par_chunks(c).zip(g.par_chunks(c)))
        .zip(m.par_chunks_mut(c).zip(v.par_chunks_mut(c)))
        .for_each(|((o, (p, g)), (m, v))| chunk_into(p, o, g, m, v, s));
    // SAFETY: the chunks cover 0..n and every element was written above.
    unsafe { out.set_len(n) };
    out
}
