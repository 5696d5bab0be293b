//! The AVX512_BF16 dot products of [`super::gemv_bf16`]: `vdpbf16ps` (`_mm512_dpbf16_ps`)
//! multiplies 32 pairs of bf16 and adds each pair's two products into one of 16 f32 lanes, so
//! a row of `C` bf16 weights takes `C / 32` instructions and one horizontal sum.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use half::bf16;

/// bf16 per `__m512bh`.
const PAIRS: usize = 32;

/// 32 bf16 from `p`, the lanes at and past `n` zero (a masked load reads nothing there).
#[inline(always)]
unsafe fn load(p: *const bf16, n: usize) -> __m512bh {
    let mask: __mmask32 = if n >= PAIRS {
        u32::MAX
    } else {
        (1u32 << n) - 1
    };
    // SAFETY (caller): `p..p + min(n, 32)` is readable; masked-off lanes are not accessed.
    let v = unsafe { _mm512_maskz_loadu_epi16(mask, p.cast::<i16>()) };
    // SAFETY: both are 64 bytes of plain bits.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// `Σ_k x[k]·w[k]` over `c` bf16 pairs, f32 accumulation in two registers.
#[inline(always)]
unsafe fn dot(x: *const bf16, w: *const bf16, c: usize) -> f32 {
    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut k = 0;
    // SAFETY (caller): `x` and `w` hold `c` elements; every load stays below `c`.
    unsafe {
        while k + 2 * PAIRS <= c {
            a0 = _mm512_dpbf16_ps(a0, load(x.add(k), PAIRS), load(w.add(k), PAIRS));
            a1 = _mm512_dpbf16_ps(
                a1,
                load(x.add(k + PAIRS), PAIRS),
                load(w.add(k + PAIRS), PAIRS),
            );
            k += 2 * PAIRS;
        }
        while k < c {
            let n = (c - k).min(PAIRS);
            a0 = _mm512_dpbf16_ps(a0, load(x.add(k), n), load(w.add(k), n));
            k += n;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
}

/// `y[j·v_total + v0 + r] = x[j, :]·w[r, :]` for the rows `r` of `w` (`[rows, c]`) and the `m`
/// rows of `x` (`[m, c]`, already bf16).
///
/// # Safety
/// The CPU must have AVX-512 F/BW and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn dots(
    x: &[bf16],
    m: usize,
    w: &[bf16],
    c: usize,
    y: &mut [f32],
    v0: usize,
    v_total: usize,
) {
    assert!(x.len() >= m * c && y.len() >= m * v_total);
    for (r, row) in w.chunks_exact(c).enumerate() {
        for j in 0..m {
            // SAFETY: row `j` of `x` and `row` hold `c` elements each (asserted above).
            y[j * v_total + v0 + r] = unsafe { dot(x.as_ptr().add(j * c), row.as_ptr(), c) };
        }
    }
}
