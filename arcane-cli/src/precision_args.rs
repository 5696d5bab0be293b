//! `--precision` of the inference commands (`generate`, `eval ...`; `bench decode` and `bench
//! hellaswag` read `bench`'s own flag): how the loaded weights are stored.

use anyhow::{bail, Result};
use arcane::model::Precision;
use arcane::Gpt;
use burn::prelude::*;
use clap::Args;

use crate::backend::BackendKind;

/// The precision flag the inference commands share (`#[command(flatten)]`).
#[derive(Debug, Clone, Copy, Args)]
pub struct PrecisionArgs {
    /// Weights in f32, or stored in bf16 (rounded to nearest even at load): half the bytes
    /// read per decoded token. On the CPU the activations and sums stay f32; on CUDA they are
    /// bf16 too.
    #[arg(long, value_name = "f32|bf16", default_value = "f32")]
    pub precision: Precision,
}

/// A precision checked against a backend, ready to apply to a loaded model.
#[derive(Debug, Clone, Copy)]
pub struct InferencePrecision {
    precision: Precision,
    backend: BackendKind,
}

impl PrecisionArgs {
    /// The flag checked against `backend` (`auto` is f32 here).
    pub fn resolve(&self, backend: BackendKind) -> Result<InferencePrecision> {
        InferencePrecision::new(self.precision.or(Precision::F32), backend)
    }
}

impl InferencePrecision {
    /// `precision` on `backend`; bf16 weights need a backend with bf16 tensors (not wgpu).
    pub fn new(precision: Precision, backend: BackendKind) -> Result<Self> {
        if precision == Precision::Bf16 && backend == BackendKind::Wgpu {
            bail!(
                "--precision bf16 needs bf16 tensors, which the wgpu backend does not have: use \
                 --precision f32 with --backend wgpu, or bf16 with --backend cpu or cuda"
            );
        }
        Ok(Self { precision, backend })
    }

    /// The model with its weights stored as asked (see `Gpt::for_inference`).
    pub fn apply<B: Backend>(self, model: Gpt<B>) -> Gpt<B> {
        model.for_inference(self.precision, self.backend == BackendKind::Cuda)
    }
}
