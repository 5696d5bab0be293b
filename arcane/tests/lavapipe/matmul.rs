//! Matrix products of the shapes Arcane's head and projections produce, at every row count
//! from 1 to 9 (decode steps, short prompts, chunks): through the backend as the model calls it
//! (fusion and autotune), and through the default kernel with autotune bypassed.

use burn::tensor::{DType, TensorPrimitive};
use burn_cubecl::kernel::matmul::{matmul, MatmulStrategy};
use burn_wgpu::{CubeBackend, WgpuRuntime};

use super::*;
use crate::common::values;

type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;

/// f32 products of length K <= 32 with factors below 1: 1e-5 absolute.
const TOL: f32 = 1e-5;

fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 2.0)
        .collect()
}

/// `x [1, M, K] @ wᵀ` with `w [N, K]` (the head's tied embedding, a transposed view), on `B`.
fn head<B: Backend>(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    device: &B::Device,
) -> Vec<f32> {
    let x = Tensor::<B, 3>::from_data(TensorData::new(x.to_vec(), [1, m, k]), device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [n, k]), device);
    values(x.matmul(w.transpose().unsqueeze::<3>()))
}

/// The same logits as `Gpt::head` computes them for at most 16 rows: `(w · xᵀ)ᵀ`, then
/// reshaped to `[1, M, N]`.
fn head_small<B: Backend>(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    device: &B::Device,
) -> Vec<f32> {
    let x = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [m, k]), device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [n, k]), device);
    let logits = w.matmul(x.transpose()); // [N, M]
    values(logits.transpose().reshape([1, m, n]))
}

/// `w · xᵀ` alone, `[N, M]`.
fn product<B: Backend>(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    device: &B::Device,
) -> Vec<f32> {
    let x = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [m, k]), device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [n, k]), device);
    values(w.matmul(x.transpose()))
}

#[test]
fn head_shaped_matmuls_match_the_cpu_at_every_row_count() {
    let mut failures = Vec::new();
    for (k, n) in [(8, 50257), (32, 512), (32, 96)] {
        let w = data(n * k, 1);
        for m in 1..=9 {
            let x = data(m * k, m);
            let cpu = head::<Cpu>(&x, &w, m, k, n, &Default::default());
            let fused = head::<Gpu>(&x, &w, m, k, n, &gpu());
            let diff = max_abs_diff(&fused, &cpu);
            // Without fusion: autotune, then the default kernel (autotune bypassed).
            let unfused = |strategy| {
                let device = gpu();
                let lhs =
                    Tensor::<Cube, 3>::from_data(TensorData::new(x.clone(), [1, m, k]), &device);
                let rhs = Tensor::<Cube, 2>::from_data(TensorData::new(w.clone(), [n, k]), &device)
                    .transpose()
                    .unsqueeze::<3>();
                let out = matmul(
                    lhs.into_primitive().tensor(),
                    rhs.into_primitive().tensor(),
                    None,
                    strategy,
                    DType::F32,
                )
                .expect("the matmul runs");
                max_abs_diff(
                    &values(Tensor::<Cube, 3>::from_primitive(TensorPrimitive::Float(
                        out,
                    ))),
                    &cpu,
                )
            };
            let (tuned, plain) = (
                unfused(MatmulStrategy::Autotune),
                unfused(MatmulStrategy::Cube),
            );
            // `Gpt::head`'s form for at most 16 rows, and its product alone.
            let small = max_abs_diff(&head_small::<Gpu>(&x, &w, m, k, n, &gpu()), &cpu);
            let prod = max_abs_diff(
                &product::<Gpu>(&x, &w, m, k, n, &gpu()),
                &product::<Cpu>(&x, &w, m, k, n, &Default::default()),
            );
            let line = format!(
                "[1, {m}, {k}] @ [{k}, {n}]: fusion+autotune {diff:.2e}, autotune {tuned:.2e}, default kernel {plain:.2e}; w.xT {prod:.2e}, (w.xT)T {small:.2e}"
            );
            eprintln!("{line}");
            if [diff, tuned, plain, small, prod]
                .iter()
                .any(|d| !(*d <= TOL))
            {
                failures.push(line);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "matmuls differ from the CPU (tolerance {TOL}):\n{}",
        failures.join("\n")
    );
}
