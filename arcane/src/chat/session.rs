//! A multi-turn chat on one KV cache: each turn's prompt is the whole conversation rendered
//! again, and only what the cache does not already hold is run through the model.
//!
//! The cache holds the ids of the last prompt and of the reply (all but its last token, which
//! was sampled and never fed back). The next rendering usually starts with exactly those ids;
//! where it does not (a template that rewrites earlier turns, a reply that tokenizes
//! differently as text), the cache is cut back to the common prefix and the rest recomputed.
//! Either way the logits are those of a fresh run on the whole prompt.

use burn::prelude::*;

use crate::error::Result;
use crate::generation::{generate_with_cache, GenerateConfig, Generation};
use crate::model::{Gpt, KvCache};

/// One reply, and how much of its prompt came from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// The generated ids and why generation stopped.
    pub generation: Generation,
    /// Prompt tokens taken from the cache (not run through the model again).
    pub reused: usize,
    /// Prompt tokens run through the model.
    pub computed: usize,
}

/// The KV cache of a conversation and the ids it holds.
#[derive(Debug)]
pub struct ChatSession<B: Backend> {
    cache: KvCache<B>,
    cached: Vec<u32>,
}

impl<B: Backend> ChatSession<B> {
    /// An empty session for `model`.
    pub fn new(model: &Gpt<B>) -> Self {
        Self {
            cache: model.new_cache(),
            cached: Vec::new(),
        }
    }

    /// Forgets everything (`/reset`).
    pub fn reset(&mut self) {
        self.cache.reset();
        self.cached.clear();
    }

    /// Tokens the cache holds.
    pub fn cached_len(&self) -> usize {
        self.cached.len()
    }

    /// Generates the reply to `prompt` (the whole conversation, rendered and encoded), reusing
    /// the cache for the prefix it shares with what the cache holds.
    pub fn reply(
        &mut self,
        model: &Gpt<B>,
        prompt: &[u32],
        config: &GenerateConfig,
        on_token: impl FnMut(u32),
    ) -> Result<Turn> {
        let shared = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one prompt token must run, to get the logits of the next one.
        let keep = shared.min(prompt.len().saturating_sub(1));
        self.cache.truncate(keep);
        self.cached.truncate(keep);
        let result = generate_with_cache(model, &mut self.cache, &prompt[keep..], config, on_token);
        let generation = match result {
            Ok(generation) => generation,
            Err(e) => {
                // The cache may hold part of a failed prefill: start clean next time.
                self.reset();
                return Err(e);
            }
        };
        self.cached.extend_from_slice(&prompt[keep..]);
        if let Some((_, fed)) = generation.ids.split_last() {
            self.cached.extend_from_slice(fed);
        }
        debug_assert_eq!(self.cached.len(), self.cache.len());
        Ok(Turn {
            generation,
            reused: keep,
            computed: prompt.len() - keep,
        })
    }
}
