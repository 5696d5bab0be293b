//! The sampling flags `generate` and `chat` share (`#[command(flatten)]`).

use clap::Args;

/// Sampling flags shared by `generate` and `chat`.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long, allow_negative_numbers = true)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens with this much probability.
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The library's sampling config, checked.
    pub fn config(&self) -> arcane::Result<arcane::generation::SamplingConfig> {
        let config = arcane::generation::SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        };
        config.validate()?;
        Ok(config)
    }
}
