//! The key/value cache for incremental decoding: explicit state that the caller owns and passes
//! as `&mut`, never hidden inside the model, so the same model serves many sequences and the
//! cache can be switched off to compare.
//!
//! Each layer's keys and values live in one preallocated buffer `[B, Hkv, Cap, D]` whose
//! capacity grows in steps of [`KvCache::bucket`] positions (up to the context). New positions
//! are written in place (`slice_assign` on a uniquely owned buffer), and attention reads the
//! whole buffer with a mask that hides the positions not written yet. So the shapes a decoding
//! step sees change once per bucket, not once per token: a JIT backend (CUDA, wgpu) compiles
//! and autotunes each kernel once per bucket instead of once per token, and no backend copies
//! the cache to append to it (the old `cat` cost O(S) per token and layer).

use burn::prelude::*;
use burn::tensor::{s, TensorData};

use crate::kernels;

/// Positions added to a layer's buffer at a time (and the granularity of attention's key
/// length): 256, as the fixed-shape decode design in `notes/burn-gpu.md` proposes.
pub const DEFAULT_BUCKET: usize = 256;

/// Keys and values of one layer, after RoPE, before heads are repeated for GQA.
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    /// `[B, Hkv, Cap, D]`; positions `len..Cap` are not valid yet.
    pub keys: Tensor<B, 4>,
    /// `[B, Hkv, Cap, D]`
    pub values: Tensor<B, 4>,
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
    len: usize,
    max_seq_len: usize,
    bucket: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model of `n_layers` layers and context `max_seq_len`, growing in
    /// buckets of [`DEFAULT_BUCKET`] positions. Nothing is allocated until the first forward.
    pub fn new(n_layers: usize, max_seq_len: usize) -> Self {
        Self::with_bucket(n_layers, max_seq_len, DEFAULT_BUCKET)
    }

    /// Like [`Self::new`] with buffers that grow `bucket` positions at a time (at least 1).
    pub fn with_bucket(n_layers: usize, max_seq_len: usize, bucket: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
            max_seq_len,
            bucket: bucket.max(1),
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

    /// The growth step of the buffers.
    pub fn bucket(&self) -> usize {
        self.bucket
    }

    /// The buffers' capacity once `len` positions are written: `len` rounded up to the bucket,
    /// at most the context.
    pub fn capacity_for(&self, len: usize) -> usize {
        len.div_ceil(self.bucket)
            .saturating_mul(self.bucket)
            .min(self.max_seq_len)
            .max(len)
    }

    /// Forgets every cached position (the buffers are dropped).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Forgets the positions from `len` on: the next forward writes at `len`. Used after a
    /// prefill whose prompt was right-padded to a fixed shape (the padding's keys stay in the
    /// buffer, hidden by the mask until they are overwritten).
    pub fn truncate(&mut self, len: usize) {
        assert!(
            len <= self.len,
            "cannot truncate a cache of {} to {len}",
            self.len
        );
        self.len = len;
    }

    /// Writes `T` new positions of layer `layer` at `start` (the current length) and returns
    /// the whole buffers, `Cap = capacity_for(start + T)` positions, of which the first
    /// `start + T` are valid.
    ///
    /// # Shapes
    /// - keys, values: `[B, Hkv, T, D]`
    /// - output: `([B, Hkv, Cap, D], [B, Hkv, Cap, D])`
    pub fn append(
        &mut self,
        layer: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [_, _, t, _] = keys.dims();
        let (start, cap) = (self.len, self.capacity_for(self.len + t));
        let mut entry = match self.layers[layer].take() {
            Some(entry) if entry.keys.dims()[2] >= cap => entry,
            past => LayerCache {
                keys: grow(past.as_ref().map(|p| &p.keys), &keys, cap, start),
                values: grow(past.as_ref().map(|p| &p.values), &values, cap, start),
            },
        };
        // In place: the buffers are uniquely owned here (the clones handed to attention by
        // the previous step are gone), so backends write into them without copying.
        entry
            .keys
            .inplace(|k| kernels::write_positions(k, start, keys));
        entry
            .values
            .inplace(|v| kernels::write_positions(v, start, values));
        let out = (entry.keys.clone(), entry.values.clone());
        self.layers[layer] = Some(entry);
        out
    }

    /// How the `t` queries at positions `len..len + t` must be masked over the `Cap` keys of
    /// the buffers: query `i` sees key `j` iff `j <= len + i`, which hides both the future
    /// (causality) and the positions not written yet.
    pub fn mask_for(&self, t: usize) -> CacheMask {
        let (start, cap) = (self.len, self.capacity_for(self.len + t));
        if start == 0 && cap == t {
            // Queries and keys are the same span: the ordinary causal mask.
            CacheMask::Causal
        } else if t == 1 && cap == start + 1 {
            // One new token that sees every key.
            CacheMask::None
        } else {
            CacheMask::Explicit { start, cap }
        }
    }

    /// Records that `t` positions were appended to every layer. The model calls it once per
    /// cached forward, after every layer has written its keys and values.
    pub fn advance(&mut self, t: usize) {
        assert!(
            self.len + t <= self.max_seq_len,
            "KV cache overflow: {} + {t} positions exceed the context of {}",
            self.len,
            self.max_seq_len
        );
        self.len += t;
    }
}

/// The cache as one forward sees it: the cache itself and the mask of this forward's queries,
/// built once and shared by every layer.
pub struct CachedForward<'a, B: Backend> {
    /// The cache, extended by every layer.
    pub cache: &'a mut KvCache<B>,
    /// How the queries are masked.
    pub mask: CacheMask,
    /// The mask as a tensor, for [`CacheMask::Explicit`]: `[1, 1, groups·T, Cap]`.
    pub mask_tensor: Option<Tensor<B, 4, Bool>>,
    /// The sliding window of the model's attention, if any (see `ModelConfig::sliding_window`).
    pub window: Option<usize>,
}

impl<'a, B: Backend> CachedForward<'a, B> {
    /// The view of `cache` for `t` new tokens whose queries come in `groups` query heads per
    /// key/value head (folded into the query axis, see `attention.rs`), for attention with an
    /// optional sliding `window`.
    pub fn new(
        cache: &'a mut KvCache<B>,
        t: usize,
        groups: usize,
        window: Option<usize>,
        device: &B::Device,
    ) -> Self {
        let (start, cap) = (cache.len(), cache.capacity_for(cache.len() + t));
        let mask = match cache.mask_for(t) {
            // The causal mask aligns queries and keys one to one; folded query groups need
            // it spelled out, and so does a window that hides keys.
            CacheMask::Causal if groups > 1 => CacheMask::Explicit { start, cap },
            _ if window.is_some_and(|w| w < start + t) => CacheMask::Explicit { start, cap },
            mask => mask,
        };
        let mask_tensor = mask.tensor(t, groups, window, device);
        Self {
            cache,
            mask,
            mask_tensor,
            window,
        }
    }
}

/// The masking one cached forward needs (the same for every layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMask {
    /// No mask: every key is visible to the single query.
    None,
    /// Keys and queries are the same span: `is_causal`.
    Causal,
    /// Query `i` (at `start + i`) sees key `j` iff `j <= start + i` (and, with a sliding
    /// window `W`, `start + i - j < W`), over `cap` keys.
    Explicit {
        /// Position of the first query.
        start: usize,
        /// Keys in the buffers.
        cap: usize,
    },
}

impl CacheMask {
    /// The boolean mask of [`CacheMask::Explicit`] for `t` queries (`true` = hidden, Burn's
    /// convention), repeated `groups` times along the query axis for grouped-query heads
    /// folded into it, with keys before a sliding `window` hidden too; `None` for the other
    /// cases.
    ///
    /// # Shapes
    /// - output: `[1, 1, groups·T, Cap]`
    pub fn tensor<B: Backend>(
        &self,
        t: usize,
        groups: usize,
        window: Option<usize>,
        device: &B::Device,
    ) -> Option<Tensor<B, 4, Bool>> {
        let CacheMask::Explicit { start, cap } = *self else {
            return None;
        };
        let w = window.unwrap_or(usize::MAX);
        let values: Vec<bool> = (0..groups * t)
            .flat_map(|r| {
                let p = start + r % t; // the query's position
                (0..cap).map(move |j| j > p || p - j >= w)
            })
            .collect();
        Some(Tensor::from_data(
            TensorData::new(values, [1, 1, groups * t, cap]),
            device,
        ))
    }
}

/// A buffer of `cap` positions holding the first `len` positions of `past` (zeros elsewhere:
/// a masked NaN would still poison `0 · NaN` in some attention kernels).
///
/// # Shapes
/// - past: `[B, Hkv, OldCap, D]`, like: `[B, Hkv, T, D]`
/// - output: `[B, Hkv, Cap, D]`
fn grow<B: Backend>(
    past: Option<&Tensor<B, 4>>,
    like: &Tensor<B, 4>,
    cap: usize,
    len: usize,
) -> Tensor<B, 4> {
    let [b, h, _, d] = like.dims();
    let buffer = Tensor::zeros([b, h, cap, d], (&like.device(), like.dtype()));
    match past {
        Some(past) if len > 0 => {
            buffer.slice_assign(s![.., .., 0..len], past.clone().slice(s![.., .., 0..len]))
        }
        _ => buffer,
    }
}
