//! burn-train `DataLoader`s over Arcane's token data: item `i` is micro-batch `i` of the run
//! (training, in the sampler's seeded order) or validation batch `i` (in order). Slicing gives
//! the block of micro-batches that one stretch of steps consumes, which is how the loop resumes.

use std::ops::Range;
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::prelude::*;

use super::sft_source::{sft_batch, SftSampler, SftSet};
use super::step::LmBatch;
use crate::data::{DataPosition, TokenData, WindowSampler};

/// Where batches come from.
#[derive(Clone, Debug)]
pub enum BatchSource {
    /// Micro-batch `i` of a training run.
    Train(Arc<WindowSampler>),
    /// Validation batch `i`: windows `i·B .. (i+1)·B` in order.
    Val(Arc<TokenData>),
    /// Micro-batch `i` of a supervised fine-tuning run (masked loss).
    SftTrain(Arc<SftSampler>),
    /// Validation batch `i` of supervised fine-tuning: examples `i·B .. (i+1)·B` in order.
    SftVal(Arc<SftSet>),
}

impl BatchSource {
    fn batch<B: Backend>(
        &self,
        index: usize,
        batch_size: usize,
        loss_scale: f64,
        device: &B::Device,
    ) -> LmBatch<B> {
        match self {
            Self::Train(sampler) => {
                LmBatch::new(&sampler.batch(index as u64, batch_size), loss_scale, device)
            }
            Self::Val(data) => LmBatch::new(
                &data.batch_in_order(index * batch_size, batch_size),
                loss_scale,
                device,
            ),
            Self::SftTrain(sampler) => {
                sampler.lm_batch(index as u64, batch_size, loss_scale, device)
            }
            Self::SftVal(set) => sft_batch(
                &set.batch_in_order(index, batch_size),
                set.pad,
                loss_scale,
                device,
            ),
        }
    }

    /// The position in the training data after `micro_batches` micro-batches (training
    /// sources only).
    pub fn position(&self, micro_batches: u64, batch_size: usize) -> DataPosition {
        match self {
            Self::Train(sampler) => sampler.position(micro_batches, batch_size),
            Self::SftTrain(sampler) => sampler.position(micro_batches, batch_size),
            Self::Val(_) | Self::SftVal(_) => unreachable!("validation sources have no position"),
        }
    }
}

/// A range of batches of a [`BatchSource`] as a Burn data loader.
#[derive(Clone, Debug)]
pub struct LmDataLoader<B: Backend> {
    source: BatchSource,
    range: Range<usize>,
    batch_size: usize,
    loss_scale: f64,
    device: B::Device,
}

impl<B: Backend> LmDataLoader<B> {
    /// Batches `range` of `source`, each of `batch_size` windows, with `loss_scale` attached.
    pub fn new(
        source: BatchSource,
        range: Range<usize>,
        batch_size: usize,
        loss_scale: f64,
        device: B::Device,
    ) -> Self {
        Self {
            source,
            range,
            batch_size,
            loss_scale,
            device,
        }
    }
}

struct LmIter<'a, B: Backend> {
    loader: &'a LmDataLoader<B>,
    next: usize,
}

impl<B: Backend> Iterator for LmIter<'_, B> {
    type Item = LmBatch<B>;

    fn next(&mut self) -> Option<LmBatch<B>> {
        let index = self.loader.range.start + self.next;
        if index >= self.loader.range.end {
            return None;
        }
        self.next += 1;
        let l = self.loader;
        Some(l.source.batch(index, l.batch_size, l.loss_scale, &l.device))
    }
}

impl<B: Backend> DataLoaderIterator<LmBatch<B>> for LmIter<'_, B> {
    fn progress(&self) -> Progress {
        Progress::new(self.next, self.loader.range.len())
    }
}

impl<B: Backend> DataLoader<B, LmBatch<B>> for LmDataLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<LmBatch<B>> + 'a> {
        Box::new(LmIter {
            loader: self,
            next: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.range.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, LmBatch<B>>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, LmBatch<B>>> {
        let first = self.range.start;
        let range = (first + start).min(self.range.end)..(first + end).min(self.range.end);
        Arc::new(Self {
            range,
            ..self.clone()
        })
    }
}
