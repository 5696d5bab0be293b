//! The whole language model: embeddings, a stack of blocks, a final norm and the output head.

use burn::nn::{Dropout, DropoutConfig, Embedding};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::adapter::LoraConfig;
use super::block::Block;
use super::config::{ModelConfig, PositionEncoding};
use super::init;
use super::kv_cache::{CachedForward, KvCache};
use super::linear::Linear;
use super::norm::Norm;
use super::precision::Precision;
use super::rope::Rope;
use crate::error::{ArcaneError, Result};
use crate::kernels::{self, HeadLayout};

/// Up to this many rows (`B·T`), the tied head multiplies the embedding table from the left.
const SMALL_BATCH_ROWS: usize = 16;

/// A GPT-2-class decoder-only transformer, generic over the Burn backend.
///
/// Build one with [`ModelConfig::init`], load one with [`crate::checkpoint::load_model`].
#[derive(Module, Debug)]
pub struct Gpt<B: Backend> {
    /// Token embedding `[V, C]` (`wte`, `embed_tokens`); also the head when tied.
    pub wte: Embedding<B>,
    /// Learned positions `[max_seq_len, C]` (`wpe`), when `positions = learned`.
    pub wpe: Option<Embedding<B>>,
    /// RoPE tables, when `positions = rope` (constants, not parameters).
    pub rope: Option<Rope<B>>,
    /// The transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm (`ln_f`, `norm`).
    pub ln_f: Norm<B>,
    /// Output head `[C, V]` when the embeddings are not tied.
    pub lm_head: Option<Linear<B>>,
    /// Dropout on the embeddings (`embd_pdrop`).
    pub dropout: Dropout,
    /// The configuration this model was built from.
    #[module(skip)]
    pub config: ModelConfig,
    /// The LoRA adapters attached to it, if any (see [`crate::lora::apply_lora`]).
    #[module(skip)]
    pub lora: Option<LoraConfig>,
    /// The dtype activations are computed in; parameters stay f32 (see [`Precision`]).
    #[module(skip)]
    pub precision: Precision,
    /// True once the projections' weights are stored in bf16 for inference
    /// ([`Gpt::with_bf16_weights`]).
    #[module(skip)]
    pub weights_bf16: bool,
}

impl ModelConfig {
    /// Builds a model with GPT-2's initialisation (see [`super::init`]); parameters are
    /// materialised lazily, on first use, from the backend's seeded RNG.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Gpt<B>> {
        self.validate()?;
        let (c, v, std) = (self.d_model, self.vocab_size, self.init_std);
        Ok(Gpt {
            wte: init::embedding(v, c, std, device),
            wpe: (self.positions == PositionEncoding::Learned)
                .then(|| init::embedding(self.max_seq_len, c, std, device)),
            rope: (self.positions == PositionEncoding::Rope).then(|| self.rope_tables(device)),
            blocks: (0..self.n_layers)
                .map(|_| Block::new(self, device))
                .collect(),
            ln_f: Norm::new(self.norm, c, self.norm_eps, self.norm_bias, device),
            lm_head: (!self.tie_embeddings).then(|| init::linear(c, v, false, std, device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            config: self.clone(),
            lora: None,
            precision: Precision::F32,
            weights_bf16: false,
        })
    }
}

impl ModelConfig {
    /// The RoPE tables of this config.
    fn rope_tables<B: Backend>(&self, device: &B::Device) -> Rope<B> {
        let scaling = self.rope_scaling.as_ref();
        Rope::new(
            self.max_seq_len,
            self.head_dim(),
            self.rope_theta,
            scaling,
            device,
        )
    }
}

impl<B: Backend> Gpt<B> {
    /// The configuration of this model.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> B::Device {
        self.wte.weight.lazy_device()
    }

    /// An empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.config.n_layers, self.config.max_seq_len)
    }

    /// Checks that every id fits the vocabulary; call it on untrusted input before a forward,
    /// which would otherwise read out of bounds.
    pub fn check_tokens(&self, ids: &[u32]) -> Result<()> {
        let vocab_size = self.config.vocab_size;
        match ids.iter().position(|&id| id as usize >= vocab_size) {
            Some(position) => Err(ArcaneError::TokenOutOfRange {
                id: ids[position],
                position,
                vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// Next-token logits for every position of a batch of sequences (no cache).
    ///
    /// # Shapes
    /// - tokens: `[B, T]` with `T <= max_seq_len`
    /// - output: `[B, T, V]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let hidden = self.forward_hidden(tokens, None);
        self.head(hidden)
    }

    /// Logits for the `T` new tokens, reading and extending `cache`, which holds the positions
    /// before them. Equal to [`Self::forward`] on the whole sequence, position by position.
    ///
    /// # Shapes
    /// - tokens: `[B, T]`
    /// - output: `[B, T, V]`
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let hidden = self.forward_hidden(tokens, Some(cache));
        self.head(hidden)
    }

    /// Like [`Self::forward_cached`] but returns only the last position's logits, which is all
    /// that sampling needs (it skips `T - 1` rows of the `[C, V]` head matmul).
    ///
    /// # Shapes
    /// - tokens: `[B, T]`
    /// - output: `[B, V]`
    pub fn forward_last(&self, tokens: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Tensor<B, 2> {
        let hidden = self.forward_hidden(tokens, Some(cache));
        let [b, t, _] = hidden.dims();
        let last = hidden.narrow(1, t - 1, 1); // [B, 1, C]
        self.head(last).reshape([b, self.config.vocab_size])
    }

    /// The final hidden states, after the last norm, before the head.
    ///
    /// # Shapes
    /// - tokens: `[B, T]`
    /// - output: `[B, T, C]`
    pub fn forward_hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [_, t] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.len());
        assert!(
            start + t <= self.config.max_seq_len,
            "sequence of {} positions exceeds the context of {}",
            start + t,
            self.config.max_seq_len
        );
        let device = tokens.device();
        let positions = move |device: &B::Device| {
            Tensor::arange(start as i64..(start + t) as i64, device).unsqueeze::<2>()
            // [1, T]
        };
        let mut x = match cache {
            Some(_) => self.embed(tokens, || positions(&device)),
            // Training: the embeddings, which activation checkpointing may recompute.
            None => kernels::recompute::stem(self, self.config.dropout > 0.0, move |model| {
                model.embed(tokens.clone(), || positions(&tokens.device()))
            }),
        };
        let groups = self.config.n_heads / self.config.kv_heads();
        let window = self.config.sliding_window;
        let mut step = cache.map(|cache| CachedForward::new(cache, t, groups, window, &device));
        for (layer, block) in self.blocks.iter().enumerate() {
            x = match step.as_mut() {
                Some(step) => block.forward(x, self.rope.as_ref(), Some((step, layer)), start),
                // Training: one block, which activation checkpointing may recompute.
                None => {
                    let rope = self.rope.clone();
                    kernels::recompute::block(block, x, self.blocks_draw(), move |block, x| {
                        block.forward(x, rope.as_ref(), None, start)
                    })
                }
            };
        }
        if let Some(step) = step {
            step.cache.advance(t);
        }
        self.ln_f.forward(x)
    }

    /// True when the blocks draw random numbers in training: dropout, or an adapter's.
    pub(crate) fn blocks_draw(&self) -> bool {
        self.config.dropout > 0.0 || self.lora.as_ref().is_some_and(|l| l.dropout > 0.0)
    }

    /// Token embeddings, plus learned positions where the model has them (`positions` is only
    /// built then), Gemma's scale, dropout and the compute precision: the input of the first
    /// block, for the plain, cached and packed forwards alike.
    ///
    /// # Shapes
    /// - tokens: `[B, T]`; positions: `[B, T]` or `[1, T]` (broadcast)
    /// - output: `[B, T, C]`
    pub(crate) fn embed(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: impl FnOnce() -> Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        // f32 rows even from a table stored in bf16 (inference; exact), cast to the compute
        // precision at the end.
        let mut x = self.wte.forward(tokens).cast(FloatDType::F32); // [B, T, C]
        if let Some(wpe) = &self.wpe {
            x = x + wpe.forward(positions());
        }
        if self.config.embedding_scale {
            // Gemma: `x · sqrt(C)` in f32, the factor rounded to f32 first, as transformers'
            // `GemmaTextScaledWordEmbedding` (an f32 buffer) does.
            x = x.mul_scalar((self.config.d_model as f64).sqrt());
        }
        self.dropout.forward(x).cast(self.precision.dtype())
    }

    /// Projects hidden states onto the vocabulary: `h · Wteᵀ` when tied, else `lm_head(h)`.
    ///
    /// # Shapes
    /// - hidden: `[B, T, C]`
    /// - output: `[B, T, V]`
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, c] = hidden.dims();
        let v = self.config.vocab_size;
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None if b * t <= SMALL_BATCH_ROWS => {
                let h = hidden.reshape([b * t, c]);
                // Decoding on the CPU: one dot product per row of the `[V, C]` table, on every
                // core, reading the table once.
                let wte = self.wte.weight.val();
                if let Some(logits) = kernels::tied_head_rows(&h, &wte) {
                    return logits.reshape([b, t, v]);
                }
                // Otherwise `Wte · hᵀ` reads the table in its own layout. The CPU backend's
                // generic path would copy the transposed 50257 x 768 table on every token.
                let logits = kernels::cast(wte, h.dtype().into()).matmul(h.transpose()); // [V, B·T]
                logits.transpose().reshape([b, t, v])
            }
            None => {
                // A 2-D product with the transposed table read in place: Burn's `linear` would
                // reshape the transposed view to 3-D, which copies the whole table on the CPU.
                let h = hidden.reshape([b * t, c]);
                let table = kernels::cast(self.wte.weight.val(), h.dtype().into());
                h.matmul(table.transpose()).reshape([b, t, v])
            }
        }
    }

    /// Mean next-token cross-entropy of `targets` given the final hidden states: the head and
    /// the loss in one operation, which on the CPU backend computes the logits in chunks of
    /// rows and never holds all `[B·T, V]` of them or their gradient (see
    /// [`kernels::linear_cross_entropy`]). The loss is computed in f32.
    ///
    /// # Shapes
    /// - hidden: `[B, T, C]`; targets: `[B, T]`
    /// - output: `[1]`
    pub fn head_loss(&self, hidden: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, t, c] = hidden.dims();
        if hidden.dtype() != DType::F32 {
            // Reduced precision: the head in that precision, the loss on f32 logits.
            let logits = self.head(hidden).cast(FloatDType::F32);
            let v = self.config.vocab_size;
            return CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits.reshape([b * t, v]), targets.reshape([b * t]));
        }
        let (h, targets) = (hidden.reshape([b * t, c]), targets.reshape([b * t]));
        match &self.lm_head {
            None => {
                // A table stored in bf16 (inference) is widened for the loss (exact).
                let wte = kernels::cast(self.wte.weight.val(), FloatDType::F32);
                kernels::linear_cross_entropy(h, wte, HeadLayout::VocabMajor, targets)
            }
            Some(head) if head.bias.is_none() && head.lora.as_ref().is_none_or(|l| l.merged) => {
                let w = kernels::cast(head.weight.val(), FloatDType::F32);
                kernels::linear_cross_entropy(h, w, HeadLayout::ChannelMajor, targets)
            }
            // A head with an adapter being trained: logits, then the loss.
            Some(head) => CrossEntropyLossConfig::new()
                .init(&h.device())
                .forward(head.forward(h), targets),
        }
    }
}
