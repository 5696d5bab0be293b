//! The dtype a model computes in.
//!
//! Parameters always stay in f32 ("master weights", Micikevicius et al. 2018, arXiv:1710.03740):
//! the optimizer's moments and updates are f32, so updates smaller than a bf16 ulp are not lost.
//! In bf16 mode the embeddings' output is cast to bf16, every projection casts its f32 weight
//! to the dtype of its input on the fly (a cast that Burn differentiates back to f32, and that
//! CubeCL fuses into neighbouring kernels), norms compute their statistics in f32, and the
//! training loss casts the logits back to f32 before the softmax. bf16 keeps f32's exponent
//! range, so no loss scaling is needed (unlike f16).

use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

use crate::error::ArcaneError;

/// Compute precision of activations and matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Chosen by the caller for its backend: the CLI uses bf16 on CUDA and f32 elsewhere; the
    /// library, which cannot tell backends apart, treats it as f32.
    #[default]
    Auto,
    /// Everything in f32 (TF32 tensor cores on NVIDIA GPUs for matrix products).
    F32,
    /// bf16 activations and matrix products with f32 accumulation, f32 master weights.
    Bf16,
}

impl Precision {
    /// The dtype activations are computed in (`Auto` computes in f32).
    pub fn dtype(self) -> FloatDType {
        match self {
            Self::Bf16 => FloatDType::BF16,
            Self::Auto | Self::F32 => FloatDType::F32,
        }
    }

    /// Whether `B` computes in this precision on `device`; an error that says what to use
    /// instead when it does not. Burn 0.21's wgpu backend has no bf16 on any driver (WGSL has
    /// no bf16 type, and its SPIR-V path converts bf16 without computing in it), so a bf16 run
    /// there must stop before its first step rather than fail inside a kernel.
    pub fn check<B: Backend>(self, device: &B::Device) -> Result<(), ArcaneError> {
        let dtype: DType = self.dtype().into();
        if B::supports_dtype(device, dtype) {
            return Ok(());
        }
        Err(ArcaneError::InvalidConfig(format!(
            "precision {self:?} is not supported by this backend ({} has no {dtype:?} on \
             {device:?}); use --precision f32 (or train bf16 on CUDA or the CPU)",
            B::name(device)
        )))
    }

    /// `Auto` made concrete with the caller's default for its backend.
    pub fn or(self, auto: Precision) -> Precision {
        match self {
            Self::Auto => auto,
            other => other,
        }
    }
}

impl FromStr for Precision {
    type Err = ArcaneError;

    fn from_str(s: &str) -> Result<Self, ArcaneError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(ArcaneError::InvalidInput(format!(
                "unknown precision {other:?}; choose auto, f32 or bf16"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dtypes() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("F32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("f16".parse::<Precision>().is_err());
        assert_eq!(Precision::Auto.dtype(), FloatDType::F32);
        assert_eq!(Precision::Bf16.dtype(), FloatDType::BF16);
        assert_eq!(Precision::Auto.or(Precision::Bf16), Precision::Bf16);
        assert_eq!(Precision::F32.or(Precision::Bf16), Precision::F32);
        let json = serde_json::to_string(&Precision::Bf16).unwrap();
        assert_eq!(json, "\"bf16\"");
    }
}
