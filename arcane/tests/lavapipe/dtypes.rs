//! Half precision on wgpu: f16 where the driver offers it, and a clear refusal of bf16, which
//! Burn 0.21's wgpu backend cannot compute in on any driver.

use arcane::model::Precision;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, FloatDType};

use super::*;
use crate::common::values;

/// `len` values in [-1, 1).
fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 2.0)
        .collect()
}

/// A `[1, 2, R, C]` tensor of [`data`] on `B`, cast to `dtype`.
fn tensor<B: Backend>(
    rows: usize,
    cols: usize,
    salt: usize,
    dtype: FloatDType,
    device: &B::Device,
) -> Tensor<B, 4> {
    Tensor::<B, 4>::from_data(
        TensorData::new(data(2 * rows * cols, salt), [1, 2, rows, cols]),
        device,
    )
    .cast(dtype)
}

/// The operations a model step is made of, in `dtype` on `B`, read back as f32: a matrix
/// product, a softmax, a normalisation and causal attention (autotune may pick a flash
/// kernel).
fn ops<B: Backend>(dtype: FloatDType, device: &B::Device) -> Vec<(&'static str, Vec<f32>)> {
    let (x, w) = (
        tensor::<B>(9, 32, 1, dtype, device),
        tensor::<B>(32, 24, 2, dtype, device),
    );
    let y = x.clone().matmul(w);
    let soft = burn::tensor::activation::softmax(y.clone(), 3);
    let mean = y.clone().mean_dim(3);
    let centred = y.clone() - mean;
    let norm = centred.clone() / (centred.powi_scalar(2).mean_dim(3) + 1e-5).sqrt();
    let (q, k, v) = (
        tensor::<B>(12, 16, 3, dtype, device),
        tensor::<B>(12, 16, 4, dtype, device),
        tensor::<B>(12, 16, 5, dtype, device),
    );
    let options = AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    };
    let att = attention(q, k, v, None, None, options);
    let f32s = |t: Tensor<B, 4>| {
        assert_eq!(t.dtype(), dtype.into(), "computed in {dtype:?}");
        values(t.cast(FloatDType::F32))
    };
    vec![
        ("matmul", f32s(y)),
        ("softmax", f32s(soft)),
        ("normalisation", f32s(norm)),
        ("causal attention", f32s(att)),
    ]
}

/// f16 on wgpu against f32 on the CPU. Arcane computes in f32 or bf16 (`Precision`), so a
/// model forward in f16 does not exist; these are the kernels an f16 model would run.
#[test]
fn f16_kernels_are_close_to_f32_on_the_cpu() {
    let device = gpu();
    if !Gpu::supports_dtype(&device, DType::F16) {
        // Lavapipe has shaderFloat16 and 16-bit storage, so it must offer f16.
        assert!(
            !adapter_name().contains("llvmpipe"),
            "lavapipe should offer f16"
        );
        eprintln!("f16: not supported by {}: not tested", adapter_name());
        return;
    }
    let half = ops::<Gpu>(FloatDType::F16, &device);
    let full = ops::<Cpu>(FloatDType::F32, &Default::default());
    for ((name, h), (_, f)) in half.iter().zip(&full) {
        // f16 keeps 11 significant bits (4.9e-4 relative per rounding): inputs, a product of
        // 32 terms and a few more roundings, 1e-2 of the output's scale.
        let scale = f.iter().fold(1f32, |m, x| m.max(x.abs()));
        assert_close(&format!("f16 {name}"), h, f, 1e-2 * scale);
    }
}

#[test]
fn bf16_is_refused_on_wgpu_with_a_clear_error() {
    let device = gpu();
    assert!(
        !Gpu::supports_dtype(&device, DType::BF16),
        "Burn 0.21's wgpu backend has no bf16 arithmetic (WGSL has no bf16 type)"
    );
    let err = Precision::Bf16
        .check::<Gpu>(&device)
        .unwrap_err()
        .to_string();
    eprintln!("bf16 on wgpu: {err}");
    assert!(
        err.contains("not supported") && err.contains("--precision f32"),
        "{err}"
    );
    Precision::F32.check::<Gpu>(&device).unwrap();
    Precision::Bf16.check::<Cpu>(&Default::default()).unwrap();
}
