//! Half precision on wgpu: f16 where the driver offers it, and a clear refusal of bf16, which
//! Burn 0.21's wgpu backend cannot compute in on any driver.

use arcane::model::Precision;
use burn::tensor::DType;

use super::*;
use crate::common::values;

/// The wgpu backend computing in f16.
type GpuF16 = burn::backend::Wgpu<burn::tensor::f16>;

#[test]
fn an_f16_forward_is_close_to_f32_on_the_cpu() {
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
    for name in ["gpt2", "llama", "qwen3"] {
        let cpu = load::<Cpu>(name, &Default::default());
        let half = load::<GpuF16>(name, &device);
        let seq = sequence(24, cpu.config().vocab_size, 4);
        let logits = half.forward(token_rows(&[seq.clone()], &device));
        assert_eq!(
            logits.dtype(),
            DType::F16,
            "the f16 backend computes in f16"
        );
        let theirs = values(cpu.forward(token_rows(&[seq], &Default::default())));
        // f16 keeps 11 significant bits (a relative rounding of 4.9e-4 per operation); over
        // a few layers the logits drift by up to ~1e-2 of their scale.
        let scale = theirs.iter().fold(1f32, |m, x| m.max(x.abs()));
        assert_close(
            &format!("{name} f16 logits"),
            &values(logits),
            &theirs,
            2e-2 * scale,
        );
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
