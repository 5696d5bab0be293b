//! Scalar math that LLVM vectorises: `exp`, `tanh`, GELU and SiLU without libm calls (libm's
//! `expf`/`tanhf` are opaque calls that keep a loop scalar: measured as 12% of a GPT-2 training
//! step's CPU time before these kernels).

/// `exp(x)` with Cephes' `expf` method: `x = n·ln2 + r`, a degree-7 polynomial for `e^r` on
/// `|r| <= ln2/2`, and `2^n` built in the exponent bits. Relative error about 2e-7 for
/// `x` in [-87, 88]; inputs are clamped to that range (so `exp(-inf)` gives 1.6e-38, not 0,
/// which no caller can tell from 0 after adding it to a sum of at least 1).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 and a correction (Cody & Waite).
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer in the low mantissa bits (round to nearest).
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * C1 - n * C2;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let p = p * r * r + r + 1.0;
    let ni = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// `tanh(x) = 1 - 2 / (e^{2x} + 1)`: absolute error below 1e-7 (relative error grows for
/// |x| < 1e-3, where the result itself is that small).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// `sqrt(2/π)`.
const GELU_K: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation.
const GELU_C: f32 = 0.044_715;

/// GPT-2's `gelu_new` (Hendrycks & Gimpel 2016, tanh approximation):
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let t = tanh(GELU_K * (x + GELU_C * x * x * x));
    0.5 * x * (1.0 + t)
}

/// `d gelu_tanh / dx`: `0.5·(1 + t) + 0.5·x·(1 - t²)·√(2/π)·(1 + 3·0.044715·x²)`.
#[inline(always)]
pub fn gelu_tanh_grad(x: f32) -> f32 {
    let t = tanh(GELU_K * (x + GELU_C * x * x * x));
    let du = GELU_K * (1.0 + 3.0 * GELU_C * x * x);
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
}

/// The logistic function `1 / (1 + e^{-x})`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulps() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
    }

    #[test]
    fn tanh_and_gelu_match_std() {
        for i in -1000..=1000 {
            let x = i as f32 / 100.0;
            assert!((tanh(x) - x.tanh()).abs() < 2e-7, "tanh({x})");
            let reference = 0.5 * x * (1.0 + (GELU_K * (x + GELU_C * x * x * x)).tanh());
            assert!((gelu_tanh(x) - reference).abs() < 1e-6, "gelu({x})");
        }
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    #[test]
    fn gelu_grad_is_the_derivative() {
        for i in -400..=400 {
            let x = i as f32 / 100.0;
            let h = 1e-3f64;
            let f = |x: f64| {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            };
            let numeric = (f(x as f64 + h) - f(x as f64 - h)) / (2.0 * h);
            assert!((gelu_tanh_grad(x) as f64 - numeric).abs() < 1e-5, "x = {x}");
        }
    }
}
