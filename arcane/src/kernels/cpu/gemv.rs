//! Products of a few rows with a large weight matrix (decoding: one token per sequence).
//! They are bound by memory bandwidth, not arithmetic: each weight is read once per call, in
//! long contiguous runs, by every core at once (a general matmul packs and re-reads them).
//! Blocks of the weight are fixed in size and partial sums are added in block order, so the
//! result does not depend on the number of threads.

use rayon::prelude::*;

use super::reduce::sum_map2;
use super::simd::multiversion;

/// Input rows of `W` `[in, out]` per task (for `out` = 768: 192 KB of weights).
const ROWS_PER_BLOCK: usize = 64;
/// Rows of `W` `[V, C]` per task in [`rows_dot`].
const DOTS_PER_BLOCK: usize = 128;

/// Columns per step of [`axpy_rows`]: one AVX-512 register, one cache line of weights per row.
const STEP: usize = 16;

/// Asks for the cache line at `p` ahead of its use (a hint: never faults, any address).
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that reads nothing architecturally; SSE is in the baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

multiversion! {
    /// `acc[j, :] += Σ_i x[j, i]·w[i, :]` over the rows `i` of `w` (`[rows, out]`), four rows
    /// at a time: four streams of weights in flight keep more memory requests outstanding
    /// than one (measured on the Xeon: 13.6 against 11.2 GB/s per core), and the accumulator
    /// is loaded and stored once per four rows. The next four rows are prefetched as these are
    /// read: they start a page or more ahead, where the hardware's stream prefetcher does not
    /// look (14.6 GB/s per core with it).
    fn axpy_rows(x: &[f32], x_stride: usize, m: usize, w: &[f32], out: usize, acc: &mut [f32]) {
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
                        *d += (a0 * s0[l] + a1 * s1[l]) + (a2 * s2[l] + a3 * s3[l]);
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
                for (d, &wv) in dst.iter_mut().zip(row) {
                    *d += a * wv;
                }
            }
        }
    }
}

/// `y[m, out] = x[m, in]·W[in, out] (+ bias)` with `W` row-major.
pub fn matvec(
    x: &[f32],
    m: usize,
    w: &[f32],
    d_in: usize,
    out: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    blocked_matvec(x, m, (w, d_in, out), bias, ROWS_PER_BLOCK, axpy_rows)
}

/// `y[m, out] = x[m, in]·W[in, out] (+ bias)` for weights of any element type: blocks of
/// `rows_per_block` rows of `W` go to the cores, each summing into its own partial output
/// with `axpy` (`acc[j, :] += Σ_i x[j, i]·w[i, :]` over its rows), then the partials are added.
pub(super) fn blocked_matvec<W: Sync>(
    x: &[f32],
    m: usize,
    (w, d_in, out): (&[W], usize, usize),
    bias: Option<&[f32]>,
    rows_per_block: usize,
    axpy: fn(&[f32], usize, usize, &[W], usize, &mut [f32]),
) -> Vec<f32> {
    assert_eq!(x.len(), m * d_in);
    assert_eq!(w.len(), d_in * out);
    let blocks = d_in.div_ceil(rows_per_block);
    let partials: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (b * rows_per_block, ((b + 1) * rows_per_block).min(d_in));
            let mut acc = vec![0.0f32; m * out];
            axpy(&x[r0..], d_in, m, &w[r0 * out..r1 * out], out, &mut acc);
            acc
        })
        .collect();
    let mut y = match bias {
        Some(b) => (0..m).flat_map(|_| b.iter().copied()).collect(),
        None => vec![0.0f32; m * out],
    };
    for p in &partials {
        add_into(&mut y, p);
    }
    y
}

multiversion! {
    fn add_into(y: &mut [f32], p: &[f32]) {
        for (y, &p) in y.iter_mut().zip(p) {
            *y += p;
        }
    }
}

multiversion! {
    /// `y[j, v] = x[j, :]·w[v, :]` for the rows `v` of `w` (`[rows, c]`), `y` laid out `[m, V]`
    /// from column `v0`; four rows of `w` at a time (four streams in flight, as in
    /// `axpy_rows`), each with 16 lanes of partial sums.
    fn dots(x: &[f32], m: usize, w: &[f32], c: usize, y: &mut [f32], v0: usize, v_total: usize) {
        const LANES: usize = 16;
        let rows = w.len() / c;
        let body = c - c % LANES;
        let mut r = 0;
        while r + 4 <= rows {
            for j in 0..m {
                let xr = &x[j * c..(j + 1) * c];
                let mut acc = [[0f32; LANES]; 4];
                for (k, xc) in xr[..body].chunks_exact(LANES).enumerate() {
                    for (q, acc) in acc.iter_mut().enumerate() {
                        let wc = &w[(r + q) * c + k * LANES..(r + q) * c + (k + 1) * LANES];
                        for l in 0..LANES {
                            acc[l] += xc[l] * wc[l];
                        }
                    }
                }
                for (q, acc) in acc.iter().enumerate() {
                    let row = &w[(r + q) * c..(r + q + 1) * c];
                    let mut s = 0.0;
                    for a in acc {
                        s += a;
                    }
                    for (&a, &b) in xr[body..].iter().zip(&row[body..]) {
                        s += a * b;
                    }
                    y[j * v_total + v0 + r + q] = s;
                }
            }
            r += 4;
        }
        for r in r..rows {
            let row = &w[r * c..(r + 1) * c];
            for j in 0..m {
                y[j * v_total + v0 + r] = sum_map2(&x[j * c..(j + 1) * c], row, |a, b| a * b);
            }
        }
    }
}

/// `y[m, V] = x[m, C]·Wᵀ` with `W` `[V, C]` row-major (a tied head: the embedding table).
pub fn rows_dot(x: &[f32], m: usize, w: &[f32], c: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * c);
    let v = w.len() / c;
    let mut y = vec![0.0f32; m * v];
    let ptr = YPtr(y.as_mut_ptr());
    (0..v.div_ceil(DOTS_PER_BLOCK))
        .into_par_iter()
        .for_each(|b| {
            let (v0, v1) = (b * DOTS_PER_BLOCK, ((b + 1) * DOTS_PER_BLOCK).min(v));
            // SAFETY: block `b` writes only columns v0..v1 of each of the m rows of `y`, disjoint
            // from every other block's; `y` outlives the parallel loop.
            let y = unsafe { std::slice::from_raw_parts_mut(ptr.get(), m * v) };
            dots(x, m, &w[v0 * c..v1 * c], c, y, v0, v);
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
    use super::*;

    #[test]
    fn matvec_and_rows_dot_equal_plain_sums() {
        let (m, d_in, out) = (3, 151, 70);
        let x: Vec<f32> = (0..m * d_in)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let w: Vec<f32> = (0..d_in * out)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 11.0)
            .collect();
        let bias: Vec<f32> = (0..out).map(|i| i as f32 / 10.0).collect();
        let y = matvec(&x, m, &w, d_in, out, Some(&bias));
        for j in 0..m {
            for o in 0..out {
                let want: f64 = bias[o] as f64
                    + (0..d_in)
                        .map(|i| x[j * d_in + i] as f64 * w[i * out + o] as f64)
                        .sum::<f64>();
                assert!((y[j * out + o] as f64 - want).abs() < 1e-4);
            }
        }
        // W [V, C] = the first 70·150 values read as 70 rows of 150.
        let z = rows_dot(&x, m, &w, d_in);
        for j in 0..m {
            for v in 0..out {
                let want: f64 = (0..d_in)
                    .map(|i| x[j * d_in + i] as f64 * w[v * d_in + i] as f64)
                    .sum();
                assert!((z[j * out + v] as f64 - want).abs() < 1e-4);
            }
        }
    }
}
