//! Training windows over memory-mapped shards, in a seeded order that is a pure function of
//! (seed, position), so a resumed run reads exactly the batches the uninterrupted run would.
//!
//! The token stream of each shard is cut into windows of `T + 1` tokens with stride `T` (inputs
//! and targets shifted by one; windows never straddle a shard). Training draws windows pass by
//! pass, each pass a fresh seeded permutation of all windows; validation reads them in order.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::manifest::DataManifest;
use super::shard::Shard;
use crate::error::{ArcaneError, Result};

/// The shards of one split of a prepared dataset, cut into windows.
#[derive(Debug)]
pub struct TokenData {
    shards: Vec<Shard>,
    /// Cumulative window counts: shard `i` holds windows `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
    seq_len: usize,
}

impl TokenData {
    /// Opens split `split` ("train" or "val") of the dataset in `dir` with windows of
    /// `seq_len + 1` tokens. Shards are listed by `manifest.json`, or found by name
    /// (`*train*.bin` / `*val*.bin`, as llm.c names them) when there is no manifest.
    pub fn open(dir: &Path, split: &str, seq_len: usize) -> Result<Self> {
        Self::from_shards(dir, split, open_shards(dir, split)?, seq_len)
    }

    /// Opens a split for evaluation with windows of at most `seq_len + 1` tokens: shorter ones
    /// when no shard holds a whole window (the validation split of a small fine-tuning text),
    /// with a notice that says so. Fails only for a split of fewer than two tokens per shard.
    pub fn open_fitting(dir: &Path, split: &str, seq_len: usize) -> Result<(Self, Option<String>)> {
        let shards = open_shards(dir, split)?;
        let longest = shards.iter().map(Shard::len).max().unwrap_or(0);
        if longest > seq_len || longest < 2 {
            return Ok((Self::from_shards(dir, split, shards, seq_len)?, None));
        }
        let fitted = longest - 1;
        let notice = format!(
            "the {split} split of {} has only {longest} tokens, less than one window of {}; \
             it is read in windows of {fitted} tokens (prepare more {split} data, e.g. with \
             --val-tokens, for a steadier figure)",
            dir.display(),
            seq_len + 1
        );
        Ok((Self::from_shards(dir, split, shards, fitted)?, Some(notice)))
    }

    fn from_shards(dir: &Path, split: &str, shards: Vec<Shard>, seq_len: usize) -> Result<Self> {
        assert!(seq_len > 0, "sequence length must be positive");
        let mut starts = vec![0];
        for shard in &shards {
            let windows = shard.len().saturating_sub(1) / seq_len;
            starts.push(starts.last().unwrap() + windows);
        }
        let data = Self {
            shards,
            starts,
            seq_len,
        };
        if data.num_windows() == 0 {
            return Err(ArcaneError::format(
                dir,
                format!(
                    "the {split} split ({} tokens) is shorter than one window of {} tokens; \
                     use a shorter sequence length or more data",
                    data.num_tokens(),
                    seq_len + 1
                ),
            ));
        }
        Ok(data)
    }

    /// Checks that every token id is below `vocab_size`, the vocabulary of the model that will
    /// read them; the error names the shard, the position and the id.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        let limit = u32::try_from(vocab_size).unwrap_or(u32::MAX);
        for shard in &self.shards {
            if let Some((position, id)) = shard.first_id_at_least(limit) {
                return Err(ArcaneError::format(
                    shard.path(),
                    format!(
                        "token {position} has id {id}, outside the model's vocabulary of \
                         {vocab_size}; the data was prepared with another tokenizer: prepare it \
                         again with the model's tokenizer"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The split's tokens in order, shards concatenated, at most `max` of them.
    pub fn tokens(&self, max: Option<usize>) -> Vec<u32> {
        let limit = max.unwrap_or(usize::MAX).min(self.num_tokens());
        let mut out = Vec::with_capacity(limit);
        for shard in &self.shards {
            let take = (limit - out.len()).min(shard.len());
            shard.read_into(0, take, &mut out);
            if out.len() == limit {
                break;
            }
        }
        out
    }

    /// Number of windows.
    pub fn num_windows(&self) -> usize {
        *self.starts.last().unwrap()
    }

    /// Number of tokens in all shards.
    pub fn num_tokens(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Tokens per window minus one (`T`).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Appends window `index` (`T + 1` tokens) to `out`.
    pub fn window_into(&self, index: usize, out: &mut Vec<u32>) {
        let shard = self.starts.partition_point(|&s| s <= index) - 1;
        let start = (index - self.starts[shard]) * self.seq_len;
        self.shards[shard].read_into(start, start + self.seq_len + 1, out);
    }

    /// Windows `first..first + count` in order (validation), fewer at the end of the split:
    /// every window is read at most once, none twice.
    pub fn batch_in_order(&self, first: usize, count: usize) -> Batch {
        let end = (first + count).min(self.num_windows());
        let first = first.min(end);
        let mut tokens = Vec::with_capacity((end - first) * (self.seq_len + 1));
        for i in first..end {
            self.window_into(i, &mut tokens);
        }
        Batch {
            tokens,
            batch_size: end - first,
            seq_len: self.seq_len,
        }
    }
}

/// The shards of split `split` of `dir`, by the manifest or by name.
fn open_shards(dir: &Path, split: &str) -> Result<Vec<Shard>> {
    if !dir.is_dir() {
        return Err(ArcaneError::format(
            dir,
            "no such data folder; prepare one with `arcane-cli prepare --input TEXT --out DIR`",
        ));
    }
    let files: Vec<PathBuf> = match DataManifest::read(dir)? {
        Some(m) => {
            let names = if split == "train" {
                m.train_shards
            } else {
                m.val_shards
            };
            names.into_iter().map(|n| dir.join(n)).collect()
        }
        None => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| ArcaneError::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.contains(split) && name.ends_with(".bin")
                })
                .collect();
            found.sort();
            found
        }
    };
    if files.is_empty() {
        return Err(ArcaneError::format(
            dir,
            format!("no {split} shards; prepare the data with `arcane-cli prepare --input TEXT --out DIR`"),
        ));
    }
    files.iter().map(|f| Shard::open(f)).collect()
}

/// `B` windows of `T + 1` tokens, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// `B · (T + 1)` token ids.
    pub tokens: Vec<u32>,
    /// `B`
    pub batch_size: usize,
    /// `T`
    pub seq_len: usize,
}

/// Where a training run is in its data, as saved in checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    /// Micro-batches consumed so far.
    pub micro_batches: u64,
    /// Windows consumed so far.
    pub windows: u64,
    /// Completed passes over the training windows.
    pub pass: u64,
    /// Windows per pass.
    pub windows_per_pass: u64,
}

/// Seeded, resumable window order over a training split.
#[derive(Debug)]
pub struct WindowSampler {
    data: TokenData,
    seed: u64,
    /// The permutation of the current pass, cached.
    order: Mutex<(u64, Vec<u32>)>,
}

impl WindowSampler {
    /// A sampler over `data` with order seed `seed`.
    pub fn new(data: TokenData, seed: u64) -> Self {
        let order = Mutex::new((0, permutation(data.num_windows(), seed, 0)));
        Self { data, seed, order }
    }

    /// The underlying windows.
    pub fn data(&self) -> &TokenData {
        &self.data
    }

    /// Micro-batch number `index` of `batch_size` windows: a pure function of
    /// (seed, index, batch size), whatever was read before.
    pub fn batch(&self, index: u64, batch_size: usize) -> Batch {
        let n = self.data.num_windows() as u64;
        let mut tokens = Vec::with_capacity(batch_size * (self.data.seq_len + 1));
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        for b in 0..batch_size as u64 {
            let draw = index * batch_size as u64 + b;
            let pass = draw / n;
            if order.0 != pass {
                *order = (pass, permutation(n as usize, self.seed, pass));
            }
            self.data
                .window_into(order.1[(draw % n) as usize] as usize, &mut tokens);
        }
        Batch {
            tokens,
            batch_size,
            seq_len: self.data.seq_len,
        }
    }

    /// The position after `micro_batches` micro-batches of `batch_size`.
    pub fn position(&self, micro_batches: u64, batch_size: usize) -> DataPosition {
        let windows = micro_batches * batch_size as u64;
        let per_pass = self.data.num_windows() as u64;
        DataPosition {
            micro_batches,
            windows,
            pass: windows / per_pass,
            windows_per_pass: per_pass,
        }
    }
}

/// A seeded permutation of `0..n` for pass `pass`.
fn permutation(n: usize, seed: u64, pass: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Distinct, well-mixed seeds per pass (SplitMix64's increment).
    let mut rng = StdRng::seed_from_u64(seed ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_shard;

    fn dataset(tokens: usize) -> (tempfile::TempDir, TokenData) {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u16> = (0..tokens as u16).collect();
        write_shard(&dir.path().join("x_train_000.bin"), &ids[..tokens / 2]).unwrap();
        write_shard(&dir.path().join("x_train_001.bin"), &ids[tokens / 2..]).unwrap();
        let data = TokenData::open(dir.path(), "train", 4).unwrap();
        (dir, data)
    }

    #[test]
    fn windows_are_shifted_pairs_within_shards() {
        let (_dir, data) = dataset(42); // shards of 21 tokens: 5 windows each
        assert_eq!(data.num_windows(), 10);
        let mut w = Vec::new();
        data.window_into(6, &mut w);
        assert_eq!(w, vec![25, 26, 27, 28, 29]);
    }

    #[test]
    fn the_order_is_seeded_and_covers_every_window_each_pass() {
        let (_dir, data) = dataset(42);
        let sampler = WindowSampler::new(data, 7);
        let firsts = |s: &WindowSampler, range: std::ops::Range<u64>| -> Vec<u32> {
            range.map(|i| s.batch(i, 2).tokens[0]).collect()
        };
        let all: Vec<u32> = (0..5)
            .flat_map(|i| {
                sampler
                    .batch(i, 2)
                    .tokens
                    .chunks(5)
                    .map(|w| w[0])
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            10,
            "one pass visits every window once: {all:?}"
        );
        // Random access equals sequential reading (what resume relies on).
        let fresh = WindowSampler::new(TokenData::open(_dir.path(), "train", 4).unwrap(), 7);
        assert_eq!(firsts(&sampler, 3..9), firsts(&fresh, 3..9));
        let other = WindowSampler::new(TokenData::open(_dir.path(), "train", 4).unwrap(), 8);
        assert_ne!(firsts(&sampler, 0..10), firsts(&other, 0..10));
    }

    #[test]
    fn validation_reads_each_window_once_and_fits_small_splits() {
        let (dir, data) = dataset(42); // 10 windows of 5 tokens
        let rows: Vec<usize> = (0..4)
            .map(|i| data.batch_in_order(3 * i, 3).batch_size)
            .collect();
        assert_eq!(
            rows,
            vec![3, 3, 3, 1],
            "the last batch is short, nothing wraps"
        );
        let firsts: Vec<u32> = (0..4)
            .flat_map(|i| {
                data.batch_in_order(3 * i, 3)
                    .tokens
                    .chunks(5)
                    .map(|w| w[0])
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(firsts, vec![0, 4, 8, 12, 16, 21, 25, 29, 33, 37]);
        // 21 tokens per shard hold no window of 33: windows of 20 instead, with a notice.
        let (fitted, notice) = TokenData::open_fitting(dir.path(), "train", 32).unwrap();
        assert_eq!((fitted.seq_len(), fitted.num_windows()), (20, 2));
        assert!(notice.unwrap().contains("windows of 20 tokens"));
        let (same, notice) = TokenData::open_fitting(dir.path(), "train", 4).unwrap();
        assert_eq!((same.seq_len(), notice), (4, None));
    }

    #[test]
    fn ids_outside_the_vocabulary_name_their_shard() {
        let (_dir, data) = dataset(42);
        assert!(data.check_vocab(41 + 1).is_ok());
        let err = data.check_vocab(30).unwrap_err().to_string();
        assert!(
            err.contains("x_train_001.bin") && err.contains("token 9 has id 30"),
            "{err}"
        );
    }

    #[test]
    fn too_little_data_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        write_shard(&dir.path().join("train_0.bin"), &[1, 2, 3]).unwrap();
        let err = TokenData::open(dir.path(), "train", 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than one window"), "{err}");
        let err = TokenData::open(dir.path(), "val", 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no val shards"), "{err}");
    }
}
