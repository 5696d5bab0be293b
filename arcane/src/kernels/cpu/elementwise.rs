//! Fused elementwise kernels: GELU (tanh) and SwiGLU forward and backward, scaling. Each
//! reads its inputs once and writes its outputs once, on every core, where the composed
//! versions made 5-8 passes on one core.

use super::math;
use rayon::prelude::*;

use super::par::{chunk_len, zip_chunks, MIN_PARALLEL};
use super::simd::multiversion;

multiversion! {
    fn gelu_chunk(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = math::gelu_tanh(x);
        }
    }
}

multiversion! {
    fn gelu_grad_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            *dx = dy * math::gelu_tanh_grad(x);
        }
    }
}

multiversion! {
    fn swiglu_chunk(gate: &[f32], up: &[f32], y: &mut [f32]) {
        for ((y, &g), &u) in y.iter_mut().zip(gate).zip(up) {
            *y = g * math::sigmoid(g) * u;
        }
    }
}

multiversion! {
    fn swiglu_grad_chunk(gate: &[f32], up: &[f32], dy: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
        let n = dgate.len();
        for i in 0..n {
            let (g, u, d) = (gate[i], up[i], dy[i]);
            let s = math::sigmoid(g);
            let silu = g * s;
            dup[i] = d * silu;
            // d silu/dg = s·(1 + g·(1 - s))
            dgate[i] = d * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

multiversion! {
    fn scale_chunk(x: &mut [f32], s: f32) {
        for x in x.iter_mut() {
            *x *= s;
        }
    }
}

/// `y = gelu_tanh(x)`.
pub fn gelu(x: &[f32], y: &mut [f32]) {
    zip_chunks(y, &[x], |y, i| gelu_chunk(i[0], y));
}

/// `dx = dy · gelu_tanh'(x)`.
pub fn gelu_grad(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    zip_chunks(dx, &[x, dy], |dx, i| gelu_grad_chunk(i[0], i[1], dx));
}

/// `y = silu(gate) · up`.
pub fn swiglu(gate: &[f32], up: &[f32], y: &mut [f32]) {
    zip_chunks(y, &[gate, up], |y, i| swiglu_chunk(i[0], i[1], y));
}

/// The gradients of [`swiglu`] with respect to `gate` and `up`.
pub fn swiglu_grad(gate: &[f32], up: &[f32], dy: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    let n = dgate.len();
    assert!(gate.len() == n && up.len() == n && dy.len() == n && dup.len() == n);
    if n < MIN_PARALLEL {
        return swiglu_grad_chunk(gate, up, dy, dgate, dup);
    }
    let c = chunk_len(n, MIN_PARALLEL / 2, 16);
    dgate
        .par_chunks_mut(c)
        .zip(dup.par_chunks_mut(c))
        .zip(
            gate.par_chunks(c)
                .zip(up.par_chunks(c))
                .zip(dy.par_chunks(c)),
        )
        .for_each(|((dg, du), ((g, u), d))| swiglu_grad_chunk(g, u, d, dg, du));
}

/// `x *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    zip_chunks(x, &[], |x, _| scale_chunk(x, s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_grad_matches_finite_differences() {
        let n = 40_000; // above the parallel threshold
        let gate: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 10.0).collect();
        let up: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) / 3.0).collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) / 2.0).collect();
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        swiglu_grad(&gate, &up, &dy, &mut dg, &mut du);
        let f = |g: f64, u: f64| g / (1.0 + (-g).exp()) * u;
        for i in (0..n).step_by(101) {
            let (g, u, d) = (gate[i] as f64, up[i] as f64, dy[i] as f64);
            let h = 1e-4;
            let ng = d * (f(g + h, u) - f(g - h, u)) / (2.0 * h);
            let nu = d * (f(g, u + h) - f(g, u - h)) / (2.0 * h);
            assert!(
                (dg[i] as f64 - ng).abs() < 1e-4,
                "dgate[{i}] {} vs {ng}",
                dg[i]
            );
            assert!(
                (du[i] as f64 - nu).abs() < 1e-4,
                "dup[{i}] {} vs {nu}",
                du[i]
            );
        }
    }
}
