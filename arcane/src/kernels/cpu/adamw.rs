//! The AdamW update (Loshchilov & Hutter 2019) of one parameter tensor in a single pass, in
//! place: parameter, gradient and both moments are read once and written once, on every core.
//! The arithmetic is Burn's `AdamW` step, operation for operation.

use rayon::prelude::*;

use super::par::{chunk_len, MIN_PARALLEL};
use super::simd::multiversion;

/// The scalars of one AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// `β₁`.
    pub beta_1: f32,
    /// `β₂`.
    pub beta_2: f32,
    /// `ε`, added to `sqrt(v̂)`.
    pub epsilon: f32,
    /// The learning rate.
    pub lr: f32,
    /// `1 - lr·weight_decay`, the decoupled decay factor.
    pub decay: f32,
    /// `1 - β₁ᵗ`, the first moment's bias correction at this step `t`.
    pub correction_1: f32,
    /// `1 - β₂ᵗ`.
    pub correction_2: f32,
}

multiversion! {
    fn chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) {
        let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
        for i in 0..p.len() {
            let gi = g[i];
            let mi = m[i] * s.beta_1 + gi * f1;
            let vi = v[i] * s.beta_2 + gi * gi * f2;
            m[i] = mi;
            v[i] = vi;
            let delta = (mi / s.correction_1) / ((vi / s.correction_2).sqrt() + s.epsilon);
            p[i] = p[i] * s.decay - delta * s.lr;
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
