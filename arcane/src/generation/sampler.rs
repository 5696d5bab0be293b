//! Picking the next token from logits: greedy, temperature, top-k and nucleus (top-p) sampling,
//! from a seeded RNG so that the same seed gives the same text.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};

/// How to sample. Defaults: temperature 1, no top-k, no top-p, seed 42.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Divides the logits; 0 means greedy (argmax), below 1 sharpens, above 1 flattens.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (Fan et al. 2018).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (Holtzman et
    /// al. 2019, "The Curious Case of Neural Text Degeneration").
    pub top_p: Option<f64>,
    /// Seed of the sampler's RNG.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 42,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding (temperature 0).
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(ArcaneError::InvalidInput(format!(
                "temperature must be a finite number >= 0 (0 is greedy), got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(ArcaneError::InvalidInput("top-k must be at least 1".into()));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ArcaneError::InvalidInput(format!(
                    "top-p must be in (0, 1], got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// A stateful sampler: its RNG advances with every sampled token.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from `config.seed`.
    pub fn new(config: SamplingConfig) -> Result<Self> {
        config.validate()?;
        let rng = StdRng::seed_from_u64(config.seed);
        Ok(Self { config, rng })
    }

    /// The next token id, given the logits over the vocabulary.
    ///
    /// # Panics
    /// If `logits` is empty.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "cannot sample from empty logits");
        if self.config.temperature == 0.0 || self.config.top_k == Some(1) {
            return argmax(logits);
        }
        // Candidates sorted by logit, most likely first (ties: lower id first, for determinism).
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let k = self.config.top_k.unwrap_or(logits.len()).min(logits.len());
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, by_logit);
            order.truncate(k);
        }
        order.sort_unstable_by(by_logit);
        // Softmax of logits / T over the candidates, in f64.
        let inv_t = 1.0 / self.config.temperature;
        let max = logits[order[0] as usize] as f64;
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i as usize] as f64 - max) * inv_t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.config.top_p {
            // Keep the shortest prefix whose mass reaches top_p (always at least one token).
            let mut mass = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    mass += p;
                    mass >= top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            order.truncate(keep);
        }
        // Inverse-CDF draw over the (renormalised) kept mass.
        let kept: f64 = probs.iter().sum();
        let mut u = self.rng.random::<f64>() * kept;
        for (p, &id) in probs.iter().zip(&order) {
            if u < *p {
                return id;
            }
            u -= p;
        }
        *order.last().expect("at least one candidate")
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampler {
        Sampler::new(SamplingConfig {
            temperature,
            top_k,
            top_p,
            seed: 7,
        })
        .unwrap()
    }

    fn histogram(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            counts[s.sample(logits) as usize] += 1;
        }
        counts
    }

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(sampler(0.0, None, None).sample(&[0.1, 2.0, -1.0, 2.0]), 1);
    }

    #[test]
    fn sampling_follows_the_softmax() {
        // p = softmax([ln 1, ln 2, ln 7]) = [0.1, 0.2, 0.7].
        let logits = [1f32.ln(), 2f32.ln(), 7f32.ln()];
        let counts = histogram(&mut sampler(1.0, None, None), &logits, 20_000);
        for (c, p) in counts.iter().zip([0.1, 0.2, 0.7]) {
            let freq = *c as f64 / 20_000.0;
            assert!((freq - p).abs() < 0.015, "{counts:?}");
        }
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [1f32.ln(), 2f32.ln(), 7f32.ln()];
        assert_eq!(
            histogram(&mut sampler(1.0, Some(2), None), &logits, 2000)[0],
            0
        );
        // Top-p 0.75: 0.7 alone is short of 0.75, so {0.7, 0.2} are kept.
        let counts = histogram(&mut sampler(1.0, None, Some(0.75)), &logits, 2000);
        assert_eq!(counts[0], 0);
        assert!(counts[1] > 0 && counts[2] > 0);
        // Top-p 0.5: the single most likely token.
        assert_eq!(
            histogram(&mut sampler(1.0, None, Some(0.5)), &logits, 500)[2],
            500
        );
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [0.0, 1.0];
        let cold = histogram(&mut sampler(0.1, None, None), &logits, 1000)[1];
        let warm = histogram(&mut sampler(2.0, None, None), &logits, 1000)[1];
        assert!(cold > 990 && warm < 800, "cold {cold}, warm {warm}");
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let a: Vec<u32> = (0..50)
            .map(|_| 0)
            .scan(sampler(1.0, None, None), |s, _| Some(s.sample(&logits)))
            .collect();
        let b: Vec<u32> = (0..50)
            .map(|_| 0)
            .scan(sampler(1.0, None, None), |s, _| Some(s.sample(&logits)))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (t, k, p) in [
            (-1.0, None, None),
            (1.0, Some(0), None),
            (1.0, None, Some(0.0)),
            (1.0, None, Some(1.5)),
        ] {
            assert!(Sampler::new(SamplingConfig {
                temperature: t,
                top_k: k,
                top_p: p,
                seed: 0
            })
            .is_err());
        }
    }
}
