//! Text generation on token ids: a seeded sampler and a KV-cache decoding loop.

mod generator;
mod sampler;
mod stop;

pub use generator::{generate, generate_with_cache, GenerateConfig, Generation, StopReason};
pub use sampler::{argmax, Sampler, SamplingConfig};
pub use stop::{eos_ids, model_eos_ids};
