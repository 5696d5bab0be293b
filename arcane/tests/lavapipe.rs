//! The GPU (CubeCL) code path on Mesa's software Vulkan driver (lavapipe), against the CPU
//! backend (burn-flex) in the same process: the same WGSL kernels, fusion and autotune that
//! Burn's wgpu backend runs on a GPU, apart from the plane (subgroup) and tensor-core variants,
//! which cubecl turns off on a CPU adapter. Built only with `--features test-lavapipe`; run by
//! `scripts/lavapipe-check.sh`, which selects the driver and runs each part under a timeout.
//!
//! Every comparison states its tolerance: both sides compute in f32 (lavapipe has no TF32), so
//! they differ by summation order only, except the f16 test.
#![cfg(feature = "test-lavapipe")]

mod common;

#[path = "lavapipe/attention.rs"]
mod attention;
#[path = "lavapipe/cache.rs"]
mod cache;
#[path = "lavapipe/dtypes.rs"]
mod dtypes;
#[path = "lavapipe/eval.rs"]
mod eval;
#[path = "lavapipe/matmul.rs"]
mod matmul;
#[path = "lavapipe/parity.rs"]
mod parity;
#[path = "lavapipe/training.rs"]
mod training;

use std::sync::OnceLock;

use arcane::{load_model, Gpt};
use burn::prelude::*;
use burn_wgpu::WgpuDevice;
use common::{fixture, max_abs_diff};

/// The wgpu backend as the CLI ships it (fusion, autotune).
pub type Gpu = burn::backend::Wgpu;
/// The CPU reference.
pub type Cpu = burn::backend::Flex;

/// The software adapter, chosen explicitly: `WgpuDevice::Cpu` takes only an adapter of Vulkan
/// device type CPU, so a real GPU on the machine is never used by mistake, and a machine
/// without the driver fails here, loudly, in every test (never a silent skip). The first call
/// creates the device and prints the adapter.
pub fn gpu() -> WgpuDevice {
    ADAPTER.get_or_init(|| {
        let setup = burn_wgpu::init_setup::<burn_wgpu::graphics::AutoGraphicsApi>(
            &WgpuDevice::Cpu,
            Default::default(),
        );
        let info = setup.adapter.get_info();
        let kind = format!("{:?}", info.device_type);
        eprintln!(
            "wgpu adapter: {} ({kind}, {:?}, driver {} {})",
            info.name, info.backend, info.driver, info.driver_info
        );
        assert_eq!(
            kind, "Cpu",
            "wgpu chose {} ({kind}), not a software (CPU-type) Vulkan adapter",
            info.name
        );
        info.name
    });
    WgpuDevice::Cpu
}

/// The name of the adapter [`gpu`] chose.
static ADAPTER: OnceLock<String> = OnceLock::new();

/// The adapter's name ("llvmpipe (LLVM 15.0.6, 256 bits)" on Debian 12).
pub fn adapter_name() -> String {
    gpu();
    ADAPTER.get().cloned().unwrap_or_default()
}

/// A fixture model on backend `B`.
pub fn load<B: Backend>(name: &str, device: &B::Device) -> Gpt<B> {
    load_model::<B>(&fixture(name), device).expect("fixture loads")
}

/// `[rows, T]` token tensor.
pub fn token_rows<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let t = rows[0].len();
    let data: Vec<i64> = rows.iter().flatten().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), t]), device)
}

/// A deterministic sequence of `len` ids below `vocab`.
pub fn sequence(len: usize, vocab: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 37 + salt * 101 + 5) % vocab as u32)
        .collect()
}

/// Whether `|gpu - cpu| <= tol` elementwise (the tolerance stated by the caller); prints the
/// measured difference, so the log shows the margin.
pub fn close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32) -> bool {
    let diff = max_abs_diff(gpu, cpu);
    let scale = cpu.iter().fold(0f32, |m, x| m.max(x.abs()));
    let verdict = if diff <= tol { "" } else { "  <-- DIFFERS" };
    eprintln!("{what}: max |wgpu - cpu| = {diff:.3e} (tolerance {tol:.0e}, max |cpu| = {scale:.3}){verdict}");
    diff <= tol
}

/// Asserts [`close`].
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32) {
    assert!(
        close(what, gpu, cpu, tol),
        "{what}: wgpu differs from the CPU by {} (tolerance {tol})",
        max_abs_diff(gpu, cpu)
    );
}

#[test]
fn the_adapter_is_a_software_vulkan_device() {
    // `gpu()` asserts the device type; the name is reported for the log.
    let device = gpu();
    let x = Tensor::<Gpu, 1>::from_floats([1.0, 2.0, 3.0], &device);
    assert_eq!(common::values(x * 2.0), vec![2.0, 4.0, 6.0]);
}
