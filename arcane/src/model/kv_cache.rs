//! The key/value cache for incremental decoding: explicit state that the caller owns and passes
//! as `&mut`, never hidden inside the model, so the same model serves many sequences and the
//! cache can be switched off to compare.

use burn::prelude::*;

/// Keys and values of one layer, after RoPE, before heads are repeated for GQA.
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    /// `[B, Hkv, S, D]`
    pub keys: Tensor<B, 4>,
    /// `[B, Hkv, S, D]`
    pub values: Tensor<B, 4>,
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
    len: usize,
    max_seq_len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model of `n_layers` layers and context `max_seq_len`.
    pub fn new(n_layers: usize, max_seq_len: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
            max_seq_len,
        }
    }

    /// Number of positions cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many more tokens fit before the context is full.
    pub fn remaining(&self) -> usize {
        self.max_seq_len - self.len
    }

    /// Forgets every cached position, keeping the allocation-free empty state.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Appends `T` new positions to layer `layer` and returns all `S` keys and values.
    ///
    /// # Shapes
    /// - keys, values: `[B, Hkv, T, D]`
    /// - output: `([B, Hkv, S, D], [B, Hkv, S, D])`
    pub fn append(
        &mut self,
        layer: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let entry = match self.layers[layer].take() {
            None => LayerCache { keys, values },
            Some(past) => LayerCache {
                keys: Tensor::cat(vec![past.keys, keys], 2),
                values: Tensor::cat(vec![past.values, values], 2),
            },
        };
        let out = (entry.keys.clone(), entry.values.clone());
        self.layers[layer] = Some(entry);
        out
    }

    /// Records that `t` positions were appended to every layer (called once per forward).
    pub(crate) fn advance(&mut self, t: usize) {
        assert!(
            self.len + t <= self.max_seq_len,
            "KV cache overflow: {} + {t} positions exceed the context of {}",
            self.len,
            self.max_seq_len
        );
        self.len += t;
    }
}
