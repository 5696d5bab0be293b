//! Vectorisable sums: LLVM keeps a plain `sum += x` loop scalar (float addition is not
//! associative), so the partial sums live in 16 explicit lanes, added up at the end. The
//! order of additions is fixed, so results do not depend on the thread count.

/// Lanes of the partial sums: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// Adds up lanes and a scalar tail.
#[inline(always)]
fn finish(acc: [f32; LANES], tail: f32) -> f32 {
    let mut s = 0.0;
    for a in acc {
        s += a;
    }
    s + tail
}

/// `Σ f(a[i])`.
#[inline(always)]
pub fn sum_map(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += f(c[j]);
        }
    }
    finish(acc, tail)
}

/// `Σ f(a[i], b[i])`.
#[inline(always)]
pub fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let body = n - n % LANES;
    for (ca, cb) in a[..body]
        .chunks_exact(LANES)
        .zip(b[..body].chunks_exact(LANES))
    {
        for j in 0..LANES {
            acc[j] += f(ca[j], cb[j]);
        }
    }
    let tail: f32 = a[body..]
        .iter()
        .zip(&b[body..])
        .map(|(&x, &y)| f(x, y))
        .sum();
    finish(acc, tail)
}

/// The largest element (`-inf` for an empty slice).
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = a.chunks_exact(LANES);
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for j in 0..LANES {
            acc[j] = acc[j].max(c[j]);
        }
    }
    for a in acc {
        m = m.max(a);
    }
    m
}
