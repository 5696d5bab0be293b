//! The host-side arithmetic of RLHF: per-token rewards, generalised advantage estimation,
//! whitening, RLOO's leave-one-out baseline and the adaptive KL controller. Plain numbers in
//! f64, so that each step can be checked by hand.

use serde::{Deserialize, Serialize};

/// Per-token rewards of one response (Ziegler et al. 2019; TRL `compute_rewards`): the KL
/// penalty `r_t = -β (log π(y_t) - log π_ref(y_t))` at every token, plus the score of the
/// whole response on its last token. `kl` holds the valid tokens only.
pub fn token_rewards(kl: &[f64], beta: f64, score: f64) -> Vec<f64> {
    let mut r: Vec<f64> = kl.iter().map(|k| -beta * k).collect();
    if let Some(last) = r.last_mut() {
        *last += score;
    }
    r
}

/// Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438) over one
/// response's valid tokens, with the value after the last token taken as 0:
///
/// `δ_t = r_t + γ v_{t+1} - v_t`, `A_t = δ_t + γλ A_{t+1}`, returns `R_t = A_t + v_t`.
///
/// Returns `(advantages, returns)`.
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lam: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    let mut advantages = vec![0.0; n];
    let mut next_advantage = 0.0;
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next_value - values[t];
        next_advantage = delta + gamma * lam * next_advantage;
        advantages[t] = next_advantage;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// TRL's `masked_whiten` over the values given: `(x - mean) / sqrt(var + 1e-8)` with the
/// unbiased variance; without `shift_mean` the mean is added back (scaling only).
pub fn whiten(xs: &[f64], shift_mean: bool) -> Vec<f64> {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return xs.to_vec();
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let scale = 1.0 / (var + 1e-8).sqrt();
    xs.iter()
        .map(|x| {
            let w = (x - mean) * scale;
            if shift_mean {
                w
            } else {
                w + mean
            }
        })
        .collect()
}

/// RLOO advantages (Ahmadian et al. 2024, arXiv:2402.14740; Kool et al. 2019): `rewards`
/// holds groups of `k` consecutive samples of one prompt; each sample's baseline is the mean
/// of the other `k - 1`: `A_i = R_i - (Σ_{j≠i} R_j) / (k - 1)`.
///
/// # Panics
/// If `k < 2` or `rewards.len()` is not a multiple of `k`.
pub fn rloo_advantages(rewards: &[f64], k: usize) -> Vec<f64> {
    assert!(
        k >= 2 && rewards.len().is_multiple_of(k),
        "RLOO needs groups of k >= 2"
    );
    rewards
        .chunks(k)
        .flat_map(|group| {
            let total: f64 = group.iter().sum();
            group.iter().map(move |r| r - (total - r) / (k - 1) as f64)
        })
        .collect()
}

/// The KL coefficient β, fixed or adaptive (Ziegler et al. 2019, §2.2; TRL
/// `AdaptiveKLController`): after each batch of `n` episodes with mean KL `kl`,
///
/// `β ← β · (1 + clip(kl / target - 1, -0.2, 0.2) · n / horizon)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveKl {
    /// The current β.
    pub value: f64,
    /// Target KL per sequence in nats; `None` keeps β fixed.
    pub target: Option<f64>,
    /// Episodes over which β may change by a factor of about e^{0.2}.
    pub horizon: f64,
}

impl AdaptiveKl {
    /// Updates β with the mean sequence KL `kl` of a batch of `n` episodes.
    pub fn update(&mut self, kl: f64, n: usize) {
        if let Some(target) = self.target {
            let error = (kl / target - 1.0).clamp(-0.2, 0.2);
            self.value *= 1.0 + error * n as f64 / self.horizon;
        }
    }
}
