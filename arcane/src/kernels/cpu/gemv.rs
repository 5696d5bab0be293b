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

multiversion! {
    /// `acc[j, :] += Σ_i x[j, i]·w[i, :]` over the rows `i` of `w` (`[rows, out]`).
    fn axpy_rows(x: &[f32], x_stride: usize, m: usize, w: &[f32], out: usize, acc: &mut [f32]) {
        for (i, row) in w.chunks_exact(out).enumerate() {
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
    assert_eq!(x.len(), m * d_in);
    assert_eq!(w.len(), d_in * out);
    let blocks = d_in.div_ceil(ROWS_PER_BLOCK);
    let partials: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (b * ROWS_PER_BLOCK, ((b + 1) * ROWS_PER_BLOCK).min(d_in));
            let mut acc = vec![0.0f32; m * out];
            axpy_rows(&x[r0..], d_in, m, &w[r0 * out..r1 * out], out, &mut acc);
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
    /// from column `v0`.
    fn dots(x: &[f32], m: usize, w: &[f32], c: usize, y: &mut [f32], v0: usize, v_total: usize) {
        for (r, row) in w.chunks_exact(c).enumerate() {
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
        let (m, d_in, out) = (3, 150, 70);
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
