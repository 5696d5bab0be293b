//! Supervised fine-tuning batches for the training loop: examples of different lengths,
//! right-padded to the longest of each micro-batch, with the positions whose targets carry
//! loss (prompt, user turns and padding carry none).
//!
//! No attention mask is needed: attention is causal, so padding after an example's last token
//! never reaches its real positions, and positions start at 0 in every row. The training order
//! is a seeded permutation of the examples per pass, a function of (seed, pass), so micro-batch
//! `i` is the same in a resumed run.

use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::step::LmBatch;
use crate::data::DataPosition;
use crate::error::{ArcaneError, Result};
use crate::model::Packing;
use crate::sft::SftExample;

/// File names of the encoded examples in an SFT run's data folder.
pub const SFT_TRAIN_FILE: &str = "sft-train.jsonl";
/// See [`SFT_TRAIN_FILE`].
pub const SFT_VAL_FILE: &str = "sft-val.jsonl";

/// Encoded examples and the id that pads them.
#[derive(Clone, Debug)]
pub struct SftSet {
    /// The examples, in file order.
    pub examples: Vec<SftExample>,
    /// The padding id (never a target).
    pub pad: u32,
    /// Packed rows: the examples of each (see [`SftSet::packed`]); `None`: one example a row.
    pub bins: Option<Vec<Vec<usize>>>,
}

impl SftSet {
    /// Reads `file` of `data_dir` (one example a line).
    pub fn open(data_dir: &Path, file: &str, pad: u32) -> Result<Self> {
        let path = data_dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| ArcaneError::io(&path, e))?;
        let examples = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str::<SftExample>(line).map_err(|e| {
                    ArcaneError::format(&path, format!("line {}: not an SFT example ({e})", i + 1))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if examples.is_empty() {
            return Err(ArcaneError::format(&path, "holds no example"));
        }
        Ok(Self {
            examples,
            pad,
            bins: None,
        })
    }

    /// The set packed into rows of at most `capacity` tokens by Best-Fit Decreasing (TRL's
    /// default `packing_strategy="bfd"`): longest example first, each into the fullest row it
    /// fits, a new row when none has room. Longer examples keep their first `capacity` tokens.
    /// A function of the examples alone, so a resumed run packs the same rows.
    pub fn packed(mut self, capacity: usize) -> Self {
        for e in &mut self.examples {
            e.ids.truncate(capacity);
            e.loss.truncate(capacity);
        }
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.examples[i].len()));
        let (mut bins, mut free): (Vec<Vec<usize>>, Vec<usize>) = (Vec::new(), Vec::new());
        for i in order {
            let n = self.examples[i].len();
            let best = (0..bins.len())
                .filter(|&b| free[b] >= n)
                .min_by_key(|&b| free[b]);
            match best {
                Some(b) => {
                    bins[b].push(i);
                    free[b] -= n;
                }
                None => {
                    bins.push(vec![i]);
                    free.push(capacity - n);
                }
            }
        }
        self.bins = Some(bins);
        self
    }

    /// Rows of training data: packed rows, or examples.
    pub fn num_rows(&self) -> usize {
        self.bins.as_ref().map_or(self.examples.len(), Vec::len)
    }

    /// The examples of row `i`.
    fn row(&self, i: usize) -> Vec<&SftExample> {
        match &self.bins {
            Some(bins) => bins[i].iter().map(|&e| &self.examples[e]).collect(),
            None => vec![&self.examples[i]],
        }
    }

    /// Writes `examples` into `file` of `data_dir`.
    pub fn save(data_dir: &Path, file: &str, examples: &[SftExample]) -> Result<()> {
        std::fs::create_dir_all(data_dir).map_err(|e| ArcaneError::io(data_dir, e))?;
        let mut text = String::new();
        for e in examples {
            text.push_str(&serde_json::to_string(e).expect("an example serializes"));
            text.push('\n');
        }
        crate::io::write_atomic(&data_dir.join(file), text.as_bytes())
    }

    /// Tokens in all examples.
    pub fn num_tokens(&self) -> usize {
        self.examples.iter().map(SftExample::len).sum()
    }

    /// Fails if an id is outside a vocabulary of `vocab_size`.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        for (i, e) in self.examples.iter().enumerate() {
            if let Some(&id) = e.ids.iter().find(|&&id| id as usize >= vocab_size) {
                return Err(ArcaneError::InvalidInput(format!(
                    "SFT example {} holds token id {id}, outside the model's vocabulary of {vocab_size}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// Validation batch `index`: examples `index·B .. (index+1)·B` in order (the last batch
    /// may be shorter).
    pub fn batch_in_order(&self, index: usize, batch_size: usize) -> Vec<&SftExample> {
        let start = (index * batch_size).min(self.examples.len());
        let end = (start + batch_size).min(self.examples.len());
        self.examples[start..end].iter().collect()
    }
}

/// Seeded, resumable example order over a training set.
#[derive(Debug)]
pub struct SftSampler {
    set: Arc<SftSet>,
    seed: u64,
}

impl SftSampler {
    /// The order of `set` under `seed`.
    pub fn new(set: Arc<SftSet>, seed: u64) -> Self {
        Self { set, seed }
    }

    /// Micro-batch `index` of `batch_size` rows (examples, or packed rows): slots `index·B ..`,
    /// slot `k` being row `perm_p[k mod n]` of pass `p = k / n`.
    pub fn batch(&self, index: u64, batch_size: usize) -> Vec<Vec<&SftExample>> {
        let n = self.set.num_rows() as u64;
        let first = index * batch_size as u64;
        let mut order: Option<(u64, Vec<usize>)> = None;
        (first..first + batch_size as u64)
            .map(|slot| {
                let pass = slot / n;
                if order.as_ref().is_none_or(|(p, _)| *p != pass) {
                    order = Some((pass, permutation(n as usize, self.seed, pass)));
                }
                let perm = &order.as_ref().expect("set above").1;
                self.set.row(perm[(slot % n) as usize])
            })
            .collect()
    }

    /// The position after `micro_batches` micro-batches of `batch_size`.
    pub fn position(&self, micro_batches: u64, batch_size: usize) -> DataPosition {
        let examples = micro_batches * batch_size as u64;
        let per_pass = self.set.num_rows() as u64;
        DataPosition {
            micro_batches,
            windows: examples,
            pass: examples / per_pass,
            windows_per_pass: per_pass,
        }
    }

    /// The batch of micro-batch `index`, packed when the set is.
    pub fn lm_batch<B: Backend>(
        &self,
        index: u64,
        batch_size: usize,
        loss_scale: f64,
        device: &B::Device,
    ) -> LmBatch<B> {
        let rows = self.batch(index, batch_size);
        match self.set.bins {
            Some(_) => sft_packed_batch(&rows, self.set.pad, loss_scale, device),
            None => {
                let examples: Vec<&SftExample> = rows.into_iter().flatten().collect();
                sft_batch(&examples, self.set.pad, loss_scale, device)
            }
        }
    }
}

/// A seeded permutation of `0..n` for pass `pass`.
fn permutation(n: usize, seed: u64, pass: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// Right-padded examples as a training batch: inputs `ids[..n-1]`, targets `ids[1..]`, and the
/// flattened positions `r·T + j` whose target `ids[j+1]` carries loss.
///
/// # Shapes
/// - inputs, targets: `[B, T]` with `T` = the longest example minus one
pub fn sft_batch<B: Backend>(
    examples: &[&SftExample],
    pad: u32,
    loss_scale: f64,
    device: &B::Device,
) -> LmBatch<B> {
    let b = examples.len();
    let t = examples.iter().map(|e| e.len()).max().unwrap_or(2).max(2) - 1;
    let mut inputs = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * t);
    let mut rows = Vec::new();
    for (r, e) in examples.iter().enumerate() {
        for j in 0..t {
            inputs.push(i64::from(e.ids.get(j).copied().unwrap_or(pad)));
            targets.push(i64::from(e.ids.get(j + 1).copied().unwrap_or(pad)));
            if e.loss.get(j + 1).copied().unwrap_or(false) {
                rows.push((r * t + j) as i64);
            }
        }
    }
    let n = rows.len();
    LmBatch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, t]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, t]), device),
        loss_scale,
        loss_rows: Some(Tensor::from_data(TensorData::new(rows, [n]), device)),
        real_tokens: examples.iter().map(|e| e.len()).sum(),
        packing: None,
        activation_checkpointing: false,
    }
}

/// Packed rows as a training batch: each row is its examples one after another (all their
/// tokens), right-padded to the longest row; token `p` of an example predicts its token
/// `p + 1` (an example's last token predicts nothing: the next example is not its
/// continuation). Positions restart at every example and attention stays inside it
/// ([`Packing`]); each padding token is an example of its own.
///
/// # Shapes
/// - inputs, targets: `[B, T]` with `T` = the longest row
pub fn sft_packed_batch<B: Backend>(
    rows: &[Vec<&SftExample>],
    pad: u32,
    loss_scale: f64,
    device: &B::Device,
) -> LmBatch<B> {
    let b = rows.len();
    let t = rows
        .iter()
        .map(|r| r.iter().map(|e| e.len()).sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (mut inputs, mut targets) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
    let (mut loss_rows, mut segments) = (Vec::new(), Vec::with_capacity(b));
    for (r, row) in rows.iter().enumerate() {
        let mut segment = Vec::with_capacity(t);
        for (k, e) in row.iter().enumerate() {
            for p in 0..e.len() {
                if e.loss.get(p + 1).copied().unwrap_or(false) {
                    loss_rows.push((r * t + segment.len()) as i64);
                }
                inputs.push(i64::from(e.ids[p]));
                targets.push(i64::from(e.ids.get(p + 1).copied().unwrap_or(pad)));
                segment.push(k as i64);
            }
        }
        while segment.len() < t {
            inputs.push(i64::from(pad));
            targets.push(i64::from(pad));
            segment.push(-1 - segment.len() as i64);
        }
        segments.push(segment);
    }
    let n = loss_rows.len();
    LmBatch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, t]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, t]), device),
        loss_scale,
        loss_rows: Some(Tensor::from_data(TensorData::new(loss_rows, [n]), device)),
        real_tokens: rows.iter().flatten().map(|e| e.len()).sum(),
        packing: Some(Packing::from_segments(&segments, device)),
        activation_checkpointing: false,
    }
}
