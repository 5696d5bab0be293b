//! The aggregate formulas of lm-evaluation-harness (`lm_eval/api/metrics.py`) and nanochat's
//! centred accuracy.

/// `mean(xs)`; 0 for no values.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// lm-eval's `mean_stderr`: the sample standard deviation (`n − 1` in the denominator)
/// over `√n`. For 0/1 scores with mean p that is `√(p (1 − p) / (n − 1))`. NaN below two
/// values, as Python's would divide by zero.
pub fn mean_stderr(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return f64::NAN;
    }
    let mu = mean(xs);
    let var = xs.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (n - 1.0);
    var.sqrt() / n.sqrt()
}

/// lm-eval's `pooled_sample_stderr`: the standard error of a size-weighted mean of groups
/// from their standard errors and sizes.
pub fn pooled_stderr(stderrs: &[f64], sizes: &[usize]) -> f64 {
    let total: usize = sizes.iter().sum();
    let num: f64 = stderrs
        .iter()
        .zip(sizes)
        .map(|(s, &n)| (n as f64 - 1.0) * s * s * n as f64)
        .sum();
    let var = num / (total as f64 - sizes.len() as f64);
    (var / total as f64).sqrt()
}

/// lm-eval's `perplexity` aggregation: `exp(−mean(log-likelihoods))`.
pub fn perplexity(logliks: &[f64]) -> f64 {
    (-mean(logliks)).exp()
}

/// `numpy.argmax`: the index of the first maximum (NaN counts as the maximum, as in numpy).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if xs[best].is_nan() {
            break;
        }
        if x.is_nan() || x > xs[best] {
            best = i;
        }
    }
    best
}

/// nanochat's centred accuracy (DCLM's CORE): `(acc − b) / (1 − b)` for a task whose random
/// guess scores `b`, so that chance is 0 and a perfect score is 1.
pub fn centred(acc: f64, baseline: f64) -> f64 {
    (acc - baseline) / (1.0 - baseline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_the_sample_standard_deviation_over_root_n() {
        // 3 hits of 4: mean 0.75, sample variance (3·0.0625 + 0.5625) / 3 = 0.25.
        let xs = [1.0, 1.0, 0.0, 1.0];
        assert!((mean_stderr(&xs) - (0.25f64).sqrt() / 2.0).abs() < 1e-15);
        // The closed form for 0/1 scores.
        let p: f64 = 0.75;
        assert!((mean_stderr(&xs) - (p * (1.0 - p) / 3.0).sqrt()).abs() < 1e-15);
        assert!(mean_stderr(&[1.0]).is_nan());
    }

    #[test]
    fn pooled_stderr_of_one_group_is_its_stderr() {
        assert!((pooled_stderr(&[0.1], &[10]) - 0.1 * (9.0f64 / 9.0).sqrt()).abs() < 1e-15);
        // Two groups: sqrt(((9·0.01·10) + (19·0.04·20)) / 28 / 30).
        let want = ((9.0 * 0.01 * 10.0 + 19.0 * 0.04 * 20.0) / 28.0 / 30.0f64).sqrt();
        assert!((pooled_stderr(&[0.1, 0.2], &[10, 20]) - want).abs() < 1e-15);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[-1.0, f64::NAN, 5.0]), 1);
        assert_eq!(argmax(&[-2.0]), 0);
    }

    #[test]
    fn centred_accuracy_maps_chance_to_zero_and_perfect_to_one() {
        assert_eq!(centred(0.25, 0.25), 0.0);
        assert_eq!(centred(1.0, 0.25), 1.0);
        assert!((centred(0.625, 0.5) - 0.25).abs() < 1e-15);
        assert_eq!(centred(0.3, 0.0), 0.3);
    }
    #[test]
    fn perplexity_is_exp_of_minus_the_mean_loglik() {
        assert!((perplexity(&[-1.0, -3.0]) - 2f64.exp()).abs() < 1e-12);
    }
}
