//! Fixed input shapes for backends that compile kernels per shape.
//!
//! CUDA and wgpu (CubeCL) JIT-compile, and autotune, every kernel for each new tensor shape:
//! an evaluation whose batches all differ in length, or a decoder whose prompt lengths differ,
//! would compile for seconds at every call. Rounding sequence lengths and row counts up to a
//! few fixed sizes, and masking the padding out, makes every call after the first reuse the
//! compiled kernels. The CPU backend compiles nothing, so it runs the exact shapes
//! ([`FixedShapes::EXACT`]) and does no padded work.

use serde::{Deserialize, Serialize};

/// How sequence lengths and row counts are rounded before a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedShapes {
    /// Sequence lengths are rounded up to a multiple of this (then capped by the context).
    pub seq: usize,
    /// Whether batches keep their full row count even when fewer rows are left (the last
    /// batch of an evaluation), so that every batch has the same shape.
    pub full_batches: bool,
}

impl FixedShapes {
    /// No rounding: every tensor has its exact shape (the CPU).
    pub const EXACT: Self = Self {
        seq: 1,
        full_batches: false,
    };
    /// Lengths in multiples of 64 and full batches: a handful of shapes per run (GPUs).
    pub const BUCKETED: Self = Self {
        seq: 64,
        full_batches: true,
    };

    /// `len` rounded up to the bucket, at most `max` (and never below `len`).
    pub fn seq_len(&self, len: usize, max: usize) -> usize {
        len.div_ceil(self.seq.max(1))
            .saturating_mul(self.seq.max(1))
            .min(max)
            .max(len)
    }

    /// The rows a batch of `rows` real rows is given: `batch` with full batches, else `rows`.
    pub fn rows(&self, rows: usize, batch: usize) -> usize {
        if self.full_batches {
            rows.max(batch)
        } else {
            rows
        }
    }
}

impl Default for FixedShapes {
    fn default() -> Self {
        Self::EXACT
    }
}

#[cfg(test)]
mod tests {
    use super::FixedShapes;

    #[test]
    fn lengths_round_up_to_the_bucket_within_the_context() {
        let b = FixedShapes::BUCKETED;
        assert_eq!(b.seq_len(1, 1024), 64);
        assert_eq!(b.seq_len(64, 1024), 64);
        assert_eq!(b.seq_len(65, 1024), 128);
        assert_eq!(b.seq_len(1000, 1024), 1024);
        assert_eq!(b.seq_len(100, 100), 100);
        assert_eq!(b.rows(3, 8), 8);
        let e = FixedShapes::EXACT;
        assert_eq!(e.seq_len(37, 1024), 37);
        assert_eq!(e.rows(3, 8), 3);
    }
}
