//! Products of a few f32 rows with weights stored in bf16 (decoding and evaluation with
//! `--precision bf16`): the weights are read at half the bytes of f32, which is what a
//! memory-bound matrix-vector product costs, and every product is accumulated in f32.
//!
//! bf16 is the upper half of an f32 (Kalamkar et al. 2019, arXiv:1905.12322), so widening a
//! weight is a 16-bit shift: `w_f32 = bits(w) << 16`, exact. Two kernels do the arithmetic:
//! - every instruction set: widen and fused multiply-add with the f32 activations (the products
//!   are exact; only the weights were rounded);
//! - AVX512_BF16 ([`Isa::Avx512Bf16`]), for the `[V, C]` head: `vdpbf16ps`, which multiplies
//!   pairs of bf16 and adds them into f32 lanes, with the activations rounded to bf16 once per
//!   call (one more rounding, at most 2⁻⁸ of each product: bf16 keeps 8 significant bits).
//!
//! Blocks of weights are fixed in size and partial sums are added in block order, as in
//! [`super::gemv`], so results do not depend on the number of threads.

use half::bf16;
use rayon::prelude::*;

use super::gemv::{blocked_matvec, prefetch};
use super::simd::{isa, multiversion, Isa};

/// Input rows of `W` `[in, out]` per task (for `out` = 768: 192 KB of bf16 weights).
const ROWS_PER_BLOCK: usize = 128;
/// Rows of `W` `[V, C]` per task in [`rows_dot`].
const DOTS_PER_BLOCK: usize = 256;
/// Elements per task of the conversions.
const CONVERT_CHUNK: usize = 1 << 16;

/// The f32 value of a bf16 (exact).
#[inline(always)]
fn widen1(w: bf16) -> f32 {
    f32::from_bits((w.to_bits() as u32) << 16)
}

multiversion! {
    fn narrow_chunk(x: &[f32], out: &mut [bf16]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = bf16::from_f32(v);
        }
    }
}

multiversion! {
    fn widen_chunk(x: &[bf16], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = widen1(v);
        }
    }
}

/// `x` rounded to bf16, to nearest with ties to even (NaN stays NaN), on all cores.
pub fn round_to_bf16(x: &[f32]) -> Vec<bf16> {
    let mut out = vec![bf16::ZERO; x.len()];
    out.par_chunks_mut(CONVERT_CHUNK)
        .zip(x.par_chunks(CONVERT_CHUNK))
        .for_each(|(o, i)| narrow_chunk(i, o));
    out
}

/// `x` as f32 (exact), on all cores.
pub fn widen(x: &[bf16]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CONVERT_CHUNK)
        .zip(x.par_chunks(CONVERT_CHUNK))
        .for_each(|(o, i)| widen_chunk(i, o));
    out
}

/// Columns per step of [`axpy_rows`]: 32 bf16 weights, one cache line per row.
const STEP: usize = 32;

multiversion! {
    /// `acc[j, :] += Σ_i x[j, i]·w[i, :]` over the rows `i` of `w` (`[rows, out]`, bf16), four
    /// rows at a time with the next four prefetched (as in `super::gemv`).
    fn axpy_rows(x: &[f32], x_stride: usize, m: usize, w: &[bf16], out: usize, acc: &mut [f32]) {
        let rows = w.len() / out;
        let mut i = 0;
        while i + 4 <= rows {
            let r = |k: usize| &w[(i + k) * out..(i + k + 1) * out];
            let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
            let next = w.as_ptr().wrapping_add((i + 4) * out);
            for j in 0..m {
                let a = &x[j * x_stride + i..j * x_stride + i + 4];
                let (a0, a1, a2, a3) = (a[0], a[1], a[2], a[3]);
                let dst = &mut acc[j * out..(j + 1) * out];
                for (c, d) in dst.chunks_mut(STEP).enumerate() {
                    let o = c * STEP;
                    if j == 0 && i + 4 < rows {
                        for k in 0..4 {
                            prefetch(next.wrapping_add(k * out + o));
                        }
                    }
                    let n = d.len();
                    let (s0, s1, s2, s3) = (&r0[o..o + n], &r1[o..o + n], &r2[o..o + n], &r3[o..o + n]);
                    for (l, d) in d.iter_mut().enumerate() {
                        *d += (a0 * widen1(s0[l]) + a1 * widen1(s1[l]))
                            + (a2 * widen1(s2[l]) + a3 * widen1(s3[l]));
                    }
                }
            }
            i += 4;
        }
        for i in i..rows {
            let row = &w[i * out..(i + 1) * out];
            for j in 0..m {
                let a = x[j * x_stride + i];
                let dst = &mut acc[j * out..(j + 1) * out];
                for (d, &w0) in dst.iter_mut().zip(row) {
                    *d += a * widen1(w0);
                }
            }
        }
    }
}

/// `y[m, out] = x[m, in]·W[in, out] (+ bias)` with `W` row-major in bf16, f32 accumulation.
pub fn matvec(
    x: &[f32],
    m: usize,
    w: &[bf16],
    d_in: usize,
    out: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    blocked_matvec(x, m, (w, d_in, out), bias, ROWS_PER_BLOCK, axpy_rows)
}

/// `x·w_q` for the `N` consecutive rows `w_q` (`c` bf16 each) at the start of `w`, widened to
/// f32, with 16 lanes of partial sums per row (see `super::reduce`).
#[inline(always)]
fn dot_rows<const N: usize>(x: &[f32], w: &[bf16], c: usize) -> [f32; N] {
    const LANES: usize = 16;
    let body = c - c % LANES;
    let mut acc = [[0f32; LANES]; N];
    for (k, xc) in x[..body].chunks_exact(LANES).enumerate() {
        for (q, acc) in acc.iter_mut().enumerate() {
            let wc = &w[q * c + k * LANES..q * c + (k + 1) * LANES];
            for l in 0..LANES {
                acc[l] += xc[l] * widen1(wc[l]);
            }
        }
    }
    let mut out = [0f32; N];
    for (q, acc) in acc.iter().enumerate() {
        let mut s = 0.0;
        for a in acc {
            s += a;
        }
        for (&a, &b) in x[body..c].iter().zip(&w[q * c + body..(q + 1) * c]) {
            s += a * widen1(b);
        }
        out[q] = s;
    }
    out
}

multiversion! {
    /// `y[j, v0 + r] = x[j, :]·w[r, :]` for the rows `r` of `w` (`[rows, c]`, bf16), four rows
    /// at a time (four streams of weights in flight, as in `super::gemv`).
    fn dots(x: &[f32], m: usize, w: &[bf16], c: usize, y: &mut [f32], v0: usize, v_total: usize) {
        let rows = w.len() / c;
        let mut r = 0;
        while r + 4 <= rows {
            for j in 0..m {
                let d = dot_rows::<4>(&x[j * c..(j + 1) * c], &w[r * c..], c);
                y[j * v_total + v0 + r..j * v_total + v0 + r + 4].copy_from_slice(&d);
            }
            r += 4;
        }
        for r in r..rows {
            for j in 0..m {
                y[j * v_total + v0 + r] = dot_rows::<1>(&x[j * c..(j + 1) * c], &w[r * c..], c)[0];
            }
        }
    }
}

/// `y[m, V] = x[m, C]·Wᵀ` with `W` `[V, C]` row-major in bf16 (a tied head), f32 results.
/// With AVX512_BF16 the activations are rounded to bf16 and `vdpbf16ps` does the products.
pub fn rows_dot(x: &[f32], m: usize, w: &[bf16], c: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * c);
    let v = w.len() / c;
    let mut y = vec![0.0f32; m * v];
    let ptr = YPtr(y.as_mut_ptr());
    let dp = isa() == Isa::Avx512Bf16;
    let x_bf16 = if dp { round_to_bf16(x) } else { Vec::new() };
    (0..v.div_ceil(DOTS_PER_BLOCK))
        .into_par_iter()
        .for_each(|b| {
            let (v0, v1) = (b * DOTS_PER_BLOCK, ((b + 1) * DOTS_PER_BLOCK).min(v));
            // SAFETY: block `b` writes only columns v0..v1 of each of the m rows of `y`, disjoint
            // from every other block's; `y` outlives the parallel loop.
            let y = unsafe { std::slice::from_raw_parts_mut(ptr.get(), m * v) };
            let rows = &w[v0 * c..v1 * c];
            #[cfg(target_arch = "x86_64")]
            {
                if dp {
                    // SAFETY: `isa()` reported AVX-512 F/BW and AVX512_BF16 on this CPU.
                    unsafe { super::bf16_x86::dots(&x_bf16, m, rows, c, y, v0, v) };
                    return;
                }
            }
            dots(x, m, rows, c, y, v0, v);
        });
    y
}

/// The output pointer of [`rows_dot`], shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct YPtr(*mut f32);
// SAFETY: see `rows_dot`: tasks write disjoint elements.
unsafe impl Send for YPtr {}
unsafe impl Sync for YPtr {}

impl YPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::limit_isa;
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_widening_exact() {
        let one = 1.0f32;
        let ulp = 2f32.powi(-7); // bf16's spacing in [1, 2)
        let cases = [
            (one + ulp / 2.0, one),                        // tie, 1.0 is even
            (one + 1.5 * ulp, one + 2.0 * ulp),            // tie, 1 + ulp is odd
            (one + ulp / 2.0 + 2f32.powi(-20), one + ulp), // above the tie
            (-(one + ulp / 2.0 - 2f32.powi(-20)), -one),   // below the tie
        ];
        let x: Vec<f32> = cases.iter().map(|c| c.0).collect();
        let b = round_to_bf16(&x);
        let back = widen(&b);
        for ((input, want), got) in cases.iter().zip(&back) {
            assert_eq!(got, want, "{input:e} rounded to {got:e}, not {want:e}");
        }
        assert!(widen(&round_to_bf16(&[f32::NAN]))[0].is_nan());
        // Widening is exact: every bf16 comes back to itself.
        let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        let round_trip = round_to_bf16(&widen(&all));
        for (a, b) in all.iter().zip(&round_trip) {
            assert!(a.to_bits() == b.to_bits() || a.is_nan(), "{a:?} -> {b:?}");
        }
    }

    /// Inputs on an odd grid: `d_in` odd (the single-row tail of the pairwise axpy), widths
    /// that are no multiple of 16 or 32 (vector and masked tails).
    fn case(m: usize, d_in: usize, out: usize) -> (Vec<f32>, Vec<bf16>) {
        let x = (0..m * d_in)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..d_in * out)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 13.0)
            .collect();
        (x, round_to_bf16(&w))
    }

    /// Every instruction set this CPU has, best first (the cap is global: the test restores
    /// it; other kernels are exact on every path, so concurrent tests still pass).
    fn each_isa(mut f: impl FnMut(Isa)) {
        for cap in [Isa::Avx512Bf16, Isa::Avx512, Isa::Avx2, Isa::Portable] {
            limit_isa(cap);
            if isa() == cap {
                f(cap);
            }
        }
        limit_isa(Isa::Avx512Bf16);
    }

    #[test]
    fn matvec_equals_f64_sums_on_every_instruction_set() {
        let (m, d_in, out) = (3, 151, 70);
        let (x, w) = case(m, d_in, out);
        let bias: Vec<f32> = (0..out).map(|i| i as f32 / 10.0).collect();
        let mut seen = Vec::new();
        each_isa(|cap| {
            seen.push(cap);
            let y = matvec(&x, m, &w, d_in, out, Some(&bias));
            for j in 0..m {
                for o in 0..out {
                    let terms =
                        (0..d_in).map(|i| x[j * d_in + i] as f64 * widen1(w[i * out + o]) as f64);
                    let want = bias[o] as f64 + terms.sum::<f64>();
                    let got = y[j * out + o] as f64;
                    // f32 accumulation of 151 exact products: well under 1e-5 relative.
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{cap:?} [{j}, {o}]: {got} vs {want}"
                    );
                }
            }
        });
        assert!(seen.contains(&Isa::Portable));
    }

    #[test]
    fn rows_dot_equals_f64_sums_on_every_instruction_set() {
        let (m, c, v) = (2, 151, 37);
        let (x, w) = case(m, c, v);
        each_isa(|cap| {
            let y = rows_dot(&x, m, &w, c);
            for j in 0..m {
                for r in 0..v {
                    let row = &w[r * c..(r + 1) * c];
                    let xr = &x[j * c..(j + 1) * c];
                    let exact: f64 = xr
                        .iter()
                        .zip(row)
                        .map(|(&a, &b)| a as f64 * widen1(b) as f64)
                        .sum();
                    let magnitude: f64 = xr
                        .iter()
                        .zip(row)
                        .map(|(&a, &b)| (a as f64 * widen1(b) as f64).abs())
                        .sum();
                    // vdpbf16ps rounds the activations to bf16: each product moves by at most
                    // 2^-8 of itself (half an ulp of 8 significant bits).
                    let bound = match cap {
                        Isa::Avx512Bf16 => magnitude * 2f64.powi(-8) + 1e-5,
                        _ => 1e-4,
                    };
                    let got = y[j * v + r] as f64;
                    assert!(
                        (got - exact).abs() <= bound,
                        "{cap:?} [{j}, {r}]: {got} vs {exact}"
                    );
                    if cap == Isa::Avx512Bf16 {
                        // ... and equals the f64 sum of the rounded activations' products.
                        let rounded: f64 = xr
                            .iter()
                            .zip(row)
                            .map(|(&a, &b)| bf16::from_f32(a).to_f64() * widen1(b) as f64)
                            .sum();
                        assert!(
                            (got - rounded).abs() < 1e-4,
                            "[{j}, {r}]: {got} vs {rounded}"
                        );
                    }
                }
            }
        });
    }
}
