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

/// `[x·w_q for q < N]` over `c` bf16 for the `N` rows `w_q` that follow each other from `w`
/// (`N` streams of weights in flight), one f32 accumulator each.
#[inline(always)]
unsafe fn dots_n<const N: usize>(x: *const bf16, w: *const bf16, c: usize) -> [f32; N] {
    let mut acc = [_mm512_setzero_ps(); N];
    let mut k = 0;
    // SAFETY (caller): `x` holds `c` elements and `w` holds `N·c`; loads stay below `c` per row.
    unsafe {
        while k < c {
            let n = (c - k).min(PAIRS);
            let xv = load(x.add(k), n);
            for (q, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_dpbf16_ps(*acc, xv, load(w.add(q * c + k), n));
            }
            k += n;
        }
    }
    acc.map(|a| _mm512_reduce_add_ps(a))
}

/// `y[j·v_total + v0 + r] = x[j, :]·w[r, :]` for the rows `r` of `w` (`[rows, c]`) and the `m`
/// rows of `x` (`[m, c]`, already bf16), four rows of `w` at a time.
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
    assert!(x.len() >= m * c && y.len() >= m * v_total && v0 + w.len() / c <= v_total);
    let rows = w.len() / c;
    let mut r = 0;
    while r + 4 <= rows {
        for j in 0..m {
            // SAFETY: row `j` of `x` holds `c` elements, rows `r..r + 4` of `w` hold `4·c`.
            let d = unsafe { dots_n::<4>(x.as_ptr().add(j * c), w.as_ptr().add(r * c), c) };
            y[j * v_total + v0 + r..j * v_total + v0 + r + 4].copy_from_slice(&d);
        }
        r += 4;
    }
    for r in r..rows {
        for j in 0..m {
            // SAFETY: as above, for one row of `w`.
            let d = unsafe { dots_n::<1>(x.as_ptr().add(j * c), w.as_ptr().add(r * c), c) };
            y[j * v_total + v0 + r] = d[0];
        }
    }
}
