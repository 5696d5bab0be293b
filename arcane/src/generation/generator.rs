//! The decoding loop: prefill the prompt into a KV cache, then sample one token at a time.

use burn::prelude::*;

use super::sampler::{Sampler, SamplingConfig};
use crate::error::{ArcaneError, Result};
use crate::model::{Gpt, KvCache};
use crate::shapes::FixedShapes;
use crate::tokenizer::Tokenizer;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Upper bound on new tokens.
    pub max_new_tokens: usize,
    /// Sampling parameters and seed.
    pub sampling: SamplingConfig,
    /// Tokens that end generation (included in the output); GPT-2's end-of-text by default.
    pub stop_tokens: Vec<u32>,
    /// Only the first `n` logits may be sampled: a model whose vocabulary is padded beyond the
    /// tokenizer's (50304 > 50257) must never emit a padding id. `None`: the whole vocabulary.
    pub vocab_limit: Option<usize>,
    /// Prompt lengths rounded to fixed shapes (GPU backends; see [`FixedShapes`]).
    pub shapes: FixedShapes,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: SamplingConfig::default(),
            stop_tokens: vec![Tokenizer::END_OF_TEXT],
            vocab_limit: Some(Tokenizer::VOCAB_SIZE),
            shapes: FixedShapes::EXACT,
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_new_tokens` were generated.
    MaxNewTokens,
    /// A stop token (end-of-text) was generated.
    EndOfText,
    /// The context window is full.
    ContextFull,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MaxNewTokens => "reached --max-new-tokens",
            Self::EndOfText => "generated end-of-text",
            Self::ContextFull => "reached the model's context limit",
        })
    }
}

/// The new tokens and why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Generated ids, the prompt excluded.
    pub ids: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
}

/// Continues `prompt` with the model, calling `on_token` with each new id as soon as it exists.
pub fn generate<B: Backend>(
    model: &Gpt<B>,
    prompt: &[u32],
    config: &GenerateConfig,
    on_token: impl FnMut(u32),
) -> Result<Generation> {
    let mut cache = model.new_cache();
    generate_with_cache(model, &mut cache, prompt, config, on_token)
}

/// [`generate`] after what `cache` already holds: `new_ids` follow the cached tokens (a chat
/// turn after the conversation so far). On return the cache holds `new_ids` and every
/// generated token but the last, which was sampled and never fed back.
pub fn generate_with_cache<B: Backend>(
    model: &Gpt<B>,
    cache: &mut KvCache<B>,
    new_ids: &[u32],
    config: &GenerateConfig,
    mut on_token: impl FnMut(u32),
) -> Result<Generation> {
    let max_seq_len = model.config().max_seq_len;
    if new_ids.is_empty() {
        return Err(ArcaneError::InvalidInput(
            "the prompt is empty; give at least one token".into(),
        ));
    }
    model.check_tokens(new_ids)?;
    if cache.len() + new_ids.len() > max_seq_len {
        return Err(ArcaneError::ContextTooLong {
            what: "the prompt".into(),
            len: cache.len() + new_ids.len(),
            max_seq_len,
            hint: "shorten the prompt".into(),
        });
    }
    let mut sampler = Sampler::new(config.sampling.clone())?;
    let mut ids = Vec::new();
    if config.max_new_tokens == 0 {
        return Ok(Generation {
            ids,
            stop: StopReason::MaxNewTokens,
        });
    }
    let mut logits = prefill(model, new_ids, cache, config.shapes);
    loop {
        if let Some(limit) = config.vocab_limit {
            logits.truncate(limit.max(1));
        }
        let next = sampler.sample(&logits);
        ids.push(next);
        on_token(next);
        let stop = if config.stop_tokens.contains(&next) {
            Some(StopReason::EndOfText)
        } else if ids.len() >= config.max_new_tokens {
            Some(StopReason::MaxNewTokens)
        } else if cache.remaining() == 0 {
            Some(StopReason::ContextFull)
        } else {
            None
        };
        if let Some(stop) = stop {
            return Ok(Generation { ids, stop });
        }
        logits = host(model.forward_last(token_tensor(model, &[next]), cache));
    }
}

/// Runs the prompt through the model into `cache` (after what it holds) and returns the logits
/// after its last token. With fixed shapes the prompt is right-padded to its bucket (causal
/// attention keeps the padding out of the real positions; never past the cache's room) and the
/// cache then forgets the padding.
fn prefill<B: Backend>(
    model: &Gpt<B>,
    prompt: &[u32],
    cache: &mut KvCache<B>,
    shapes: FixedShapes,
) -> Vec<f32> {
    let t = prompt.len();
    let start = cache.len();
    let padded_len = shapes
        .seq_len(t, model.config().max_seq_len)
        .min(cache.remaining());
    if padded_len <= t {
        return host(model.forward_last(token_tensor(model, prompt), cache));
    }
    let mut padded = prompt.to_vec();
    // Any valid id will do: the padding's outputs are never read.
    padded.resize(padded_len, 0);
    let hidden = model.forward_hidden(token_tensor(model, &padded), Some(cache)); // [1, T', C]
    cache.truncate(start + t);
    let last = hidden.narrow(1, t - 1, 1); // [1, 1, C]
    host(model.head(last))
}

/// `[1, T]` token ids on the model's device.
fn token_tensor<B: Backend>(model: &Gpt<B>, ids: &[u32]) -> Tensor<B, 2, Int> {
    Tensor::<B, 1, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| t as i64).collect(), [ids.len()]),
        &model.device(),
    )
    .unsqueeze::<2>()
}

/// Logits on the host, as f32.
fn host<B: Backend, const D: usize>(logits: Tensor<B, D>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 logits")
}
