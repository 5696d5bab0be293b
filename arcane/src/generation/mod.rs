//! Text generation on token ids: a seeded sampler and a KV-cache decoding loop.

mod generator;
mod sampler;

pub use generator::{generate, generate_with_cache, GenerateConfig, Generation, StopReason};
pub use sampler::{argmax, Sampler, SamplingConfig};
