//! Shared helpers of the integration tests: the CPU backend, fixtures and comparisons.
#![allow(dead_code)]

pub mod parity;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::Value;

/// The backend the tests run on: the CPU, or a GPU with `--features test-cuda` / `test-wgpu`.
#[cfg(not(any(feature = "test-cuda", feature = "test-wgpu")))]
pub type TestBackend = burn::backend::Flex;
/// The backend the tests run on (CUDA).
#[cfg(feature = "test-cuda")]
pub type TestBackend = burn::backend::Cuda;
/// The backend the tests run on (wgpu).
#[cfg(all(feature = "test-wgpu", not(feature = "test-cuda")))]
pub type TestBackend = burn::backend::Wgpu;
/// `cpu` on the CPU; on a GPU backend at least 2e-2. NVIDIA GPUs run f32 matrix products on
/// TF32 tensor cores (10 mantissa bits; cubek-matmul picks them for f32), so logits computed
/// there differ from an f32 reference by ~1e-3 of their magnitude, and summation orders differ.
pub fn tol(cpu: f32) -> f32 {
    if cfg!(any(feature = "test-cuda", feature = "test-wgpu")) {
        cpu.max(2e-2)
    } else {
        cpu
    }
}

/// Its autodiff wrapper.
pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;

/// A file or folder under `tests/fixtures` (or under `$ARCANE_FIXTURES`, for test binaries
/// carried to another machine).
pub fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("ARCANE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    dir.join(name)
}

/// `tests/fixtures/reference.json`, written by `scripts/make_reference.py` from transformers.
pub fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("valid reference.json")
}

/// `tests/fixtures/tokenizer_reference.json`: the Python `tokenizers` ids of a few strings
/// for the fixtures' `tokenizer.json`, with and without special tokens.
pub fn tokenizer_reference() -> Value {
    let text = std::fs::read_to_string(fixture("tokenizer_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of fixture `name` with `edit` applied to the copy.
pub fn edited_copy(name: &str, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    edit(dir.path());
    dir
}

/// A JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON array of integers as u32.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// `[1, T]` token tensor.
pub fn tokens<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::<B, 1, Int>::from_data(TensorData::new(data, [ids.len()]), device).unsqueeze()
}

/// A tensor's values on the host.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
