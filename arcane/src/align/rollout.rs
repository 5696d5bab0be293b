//! Rollouts: batched sampling with the KV cache. One prefill of `[BOS] + prompt` for every
//! row, then one `[B, 1]` step per token, each row drawing from its own seeded RNG, so a
//! row's tokens depend only on its seed and the model, not on its neighbours.
//!
//! Responses have a fixed length (as lm-human-preferences); tokens after the first
//! end-of-text are generated but masked out of every loss. Rows of a batch share the prompt
//! length, because the cache has no padding mask: [`prompt_batches`] cuts each batch's prompts
//! to the shortest among them (TRL's `LengthSampler` draws one length per batch too).

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::batch::{bos_of, eos_of, vocab_limit_of};
use crate::error::{ArcaneError, Result};
use crate::generation::argmax;
use crate::model::{Gpt, ModelConfig};

/// What to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutConfig {
    /// Tokens per response.
    pub response_tokens: usize,
    /// Sampling temperature (0: greedy). No top-k or top-p: RL scores the true distribution.
    pub temperature: f64,
    /// Only ids below this are sampled (and scored).
    pub vocab_limit: usize,
    /// The token that opens every sequence.
    pub bos: u32,
    /// The tokens that end a response (any of them; none: responses run to full length).
    pub eos: Vec<u32>,
    /// Chat prompts: each ends with the template's generation prompt, so none is ever cut
    /// (batches hold prompts of one length instead), and the reward reads a response through
    /// its end-of-turn token, as the reward model learnt replies ([`super::ChatFormat`]).
    pub chat: bool,
}

impl RolloutConfig {
    /// Responses of `response_tokens` at `temperature` for a model of `config`.
    pub fn for_model(config: &ModelConfig, response_tokens: usize, temperature: f64) -> Self {
        Self {
            response_tokens,
            temperature,
            vocab_limit: vocab_limit_of(config),
            bos: bos_of(config),
            eos: eos_of(config),
            chat: false,
        }
    }

    /// For chat prompts ([`Self::chat`]): responses also end at `stop` (a template's
    /// end-of-turn tokens), which are sampled like any other id (Arcane's ChatML puts
    /// `<|im_end|>` past GPT-2's 50257 ids: the sampled ids grow to cover it and
    /// `<|im_start|>`).
    pub fn with_chat_stop(mut self, stop: &[u32]) -> Self {
        let past = stop.iter().map(|&id| id as usize + 1).max().unwrap_or(0);
        self.vocab_limit = self.vocab_limit.max(past);
        self.eos.extend_from_slice(stop);
        self.eos.sort_unstable();
        self.eos.dedup();
        self.chat = true;
        self
    }

    /// Where the first end-of-sequence token of `response` is.
    fn first_eos(&self, response: &[u32]) -> Option<usize> {
        response.iter().position(|t| self.eos.contains(t))
    }

    /// Whether `response` ended (holds an end-of-sequence or end-of-turn token) within the
    /// response length.
    pub fn ended(&self, response: &[u32]) -> bool {
        self.first_eos(response).is_some()
    }

    /// Tokens of a response up to and including its first end-of-text.
    pub fn valid_len(&self, response: &[u32]) -> usize {
        match self.first_eos(response) {
            Some(i) => i + 1,
            None => response.len(),
        }
    }

    /// A response without its end-of-text and what follows.
    pub fn text_part<'a>(&self, response: &'a [u32]) -> &'a [u32] {
        match self.first_eos(response) {
            Some(i) => &response[..i],
            None => response,
        }
    }

    /// What a reward reads of a response: [`Self::text_part`], or for chat prompts the
    /// response through its end-of-turn token ([`Self::valid_len`]).
    pub fn reward_part<'a>(&self, response: &'a [u32]) -> &'a [u32] {
        match self.chat {
            true => &response[..self.valid_len(response)],
            false => self.text_part(response),
        }
    }
}

/// Draws an id from `softmax(logits / temperature)` by inverse CDF (greedy at temperature 0).
pub fn sample_token(logits: &[f32], temperature: f64, rng: &mut StdRng) -> u32 {
    if temperature == 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&z| ((z as f64 - max) / temperature).exp())
        .collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    (logits.len() - 1) as u32
}

/// Samples one response per prompt (all prompts of one length) with the KV cache; row `i`
/// draws from an RNG seeded with `seeds[i]`.
pub fn generate_batch<B: Backend>(
    model: &Gpt<B>,
    prompts: &[Vec<u32>],
    config: &RolloutConfig,
    seeds: &[u64],
) -> Result<Vec<Vec<u32>>> {
    let n = prompts.len();
    let k = prompts.first().map_or(0, Vec::len);
    if prompts.iter().any(|p| p.len() != k) || seeds.len() != n {
        return Err(ArcaneError::InvalidInput(
            "a rollout batch needs prompts of one length and one seed per prompt".into(),
        ));
    }
    let ctx = model.config().max_seq_len;
    if 1 + k + config.response_tokens > ctx {
        return Err(ArcaneError::ContextTooLong {
            what: "BOS + prompt + response".into(),
            len: 1 + k + config.response_tokens,
            max_seq_len: ctx,
            hint: "use fewer --response-tokens or shorter prompts".into(),
        });
    }
    let (device, v) = (model.device(), model.config().vocab_size);
    let limit = config.vocab_limit.min(v);
    let mut rngs: Vec<StdRng> = seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
    let mut cache = model.new_cache();
    let mut input: Vec<i64> = prompts
        .iter()
        .flat_map(|p| std::iter::once(config.bos).chain(p.iter().copied()))
        .map(i64::from)
        .collect();
    let mut width = 1 + k;
    let mut out = vec![Vec::with_capacity(config.response_tokens); n];
    for _ in 0..config.response_tokens {
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [n, width]), &device);
        let logits: Vec<f32> = model
            .forward_last(tokens, &mut cache) // [N, V]
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits");
        input = Vec::with_capacity(n);
        for (row, rng) in rngs.iter_mut().enumerate() {
            let id = sample_token(&logits[row * v..row * v + limit], config.temperature, rng);
            out[row].push(id);
            input.push(i64::from(id));
        }
        width = 1;
    }
    Ok(out)
}

/// Splits `prompts` into consecutive batches of at most `batch`, each cut to one length: the
/// shortest prompt of the batch, at most `max_tokens` (prompts keep their first tokens).
/// Chat prompts are never cut: see [`equal_length_batches`].
pub fn prompt_batches(prompts: &[Vec<u32>], batch: usize, max_tokens: usize) -> Vec<Vec<Vec<u32>>> {
    prompts
        .chunks(batch.max(1))
        .map(|chunk| {
            let k = chunk
                .iter()
                .map(Vec::len)
                .min()
                .unwrap_or(0)
                .min(max_tokens);
            chunk.iter().map(|p| p[..k].to_vec()).collect()
        })
        .collect()
}

/// Batches of at most `batch` indices into `prompts`, each of prompts of one length (for
/// chat prompts, which cannot be cut): indices grouped by length (shortest first), in their
/// order within a length.
pub fn equal_length_batches(prompts: &[Vec<u32>], batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].len());
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match out.last_mut() {
            Some(b) if b.len() < batch.max(1) && prompts[b[0]].len() == prompts[i].len() => {
                b.push(i)
            }
            _ => out.push(vec![i]),
        }
    }
    out
}

/// A seed for row `row` of draw `draw` under `seed` (SplitMix64's finaliser: distinct rows
/// get unrelated streams).
pub(crate) fn row_seed(seed: u64, draw: u64, row: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(draw.wrapping_mul(0xd1b5_4a32_d192_ed03))
        .wrapping_add(row.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
