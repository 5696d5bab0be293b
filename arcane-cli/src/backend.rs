//! The only place that names concrete backends: `--backend` becomes a type parameter here.
//!
//! A command implements [`Task`] once, generically; [`run`] picks the backend type at run time.
//! Backends missing from this build, and GPUs missing from this machine, are errors that say
//! what to do, never panics.

use anyhow::Result;
use burn::prelude::*;

/// The `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// burn-flex on the CPU (feature `flex`, the default).
    Cpu,
    /// wgpu: Vulkan, Metal or DX12 (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// How input shapes are rounded on this backend: exact on the CPU, bucketed on the GPU
    /// backends, which compile kernels per shape.
    pub fn shapes(self) -> arcane::shapes::FixedShapes {
        match self {
            Self::Cpu => arcane::shapes::FixedShapes::EXACT,
            Self::Wgpu | Self::Cuda => arcane::shapes::FixedShapes::BUCKETED,
        }
    }

    /// The precision `auto` stands for: bf16 on CUDA (tensor cores, f32 master weights), f32
    /// elsewhere (the CPU computes bf16 through f32 and gains nothing).
    pub fn precision(self) -> arcane::model::Precision {
        match self {
            Self::Cuda => arcane::model::Precision::Bf16,
            Self::Cpu | Self::Wgpu => arcane::model::Precision::F32,
        }
    }

    /// The lower-case name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

// Burn's `distributed` feature would leave the CPU backend unable to train (see `TrainBackend`).
#[cfg(all(feature = "cuda-ddp", feature = "flex"))]
compile_error!(
    "`cuda-ddp` is a CUDA-only build: build it with \
     `cargo build --release -p arcane-cli --no-default-features --features cuda-ddp`"
);

/// The backends a command can train on (take `Autodiff` of): every backend, except in a
/// `cuda-ddp` build, where Burn's `distributed` feature makes `Autodiff<B>` an
/// `AutodiffBackend` only for `B: DistributedBackend` (the GPU backends, not the CPU ones).
#[cfg(not(feature = "cuda-ddp"))]
pub trait TrainBackend: Backend {}
#[cfg(not(feature = "cuda-ddp"))]
impl<B: Backend> TrainBackend for B {}
/// The backends a command can train on: those Burn's NCCL data parallel supports.
#[cfg(feature = "cuda-ddp")]
pub trait TrainBackend: burn::tensor::backend::distributed::DistributedBackend {}
#[cfg(feature = "cuda-ddp")]
impl<B: burn::tensor::backend::distributed::DistributedBackend> TrainBackend for B {}

/// Work that can run on any backend.
pub trait Task {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` and `device`.
    fn run<B: TrainBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Work that runs on several devices of one backend (data-parallel training).
pub trait DevicesTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` and `devices` (at least one).
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Self::Output>;
}

/// Runs `task` on the backend named by `kind`, on its default device.
pub fn run<T: Task>(kind: BackendKind, task: T) -> Result<T::Output> {
    run_on_devices(kind, &[0], OnFirst(task))
}

/// A single-device task as a devices task: it runs on the first device.
struct OnFirst<T>(T);

impl<T: Task> DevicesTask for OnFirst<T> {
    type Output = T::Output;

    fn run<B: TrainBackend>(self, mut devices: Vec<B::Device>) -> Result<T::Output> {
        self.0.run::<B>(devices.swap_remove(0))
    }
}

/// Runs `task` on devices `indices` of the backend named by `kind`, checking each device: the
/// one dispatch from a `--backend` value to a backend type. A backend missing from this build
/// is an error that says how to build it.
pub fn run_on_devices<T: DevicesTask>(
    kind: BackendKind,
    indices: &[usize],
    task: T,
) -> Result<T::Output> {
    if indices.is_empty() {
        anyhow::bail!("give at least one device index");
    }
    match kind {
        BackendKind::Cpu if indices != [0] => {
            anyhow::bail!("the CPU backend has one device (0); --devices with several indices needs --backend cuda or wgpu")
        }
        BackendKind::Cpu => {
            #[cfg(feature = "flex")]
            return task.run::<burn::backend::Flex>(vec![Default::default()]);
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            return on_gpus::<burn::backend::Wgpu, T>(task, indices, kind, |i| {
                if indices == [0] {
                    burn::backend::wgpu::WgpuDevice::default()
                } else {
                    burn::backend::wgpu::WgpuDevice::DiscreteGpu(i)
                }
            });
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            return on_gpus::<burn::backend::Cuda, T>(
                task,
                indices,
                kind,
                burn::backend::cuda::CudaDevice::new,
            );
        }
    }
    #[allow(unreachable_code)]
    Err(missing(kind))
}

/// Probes GPU `device_of(i)` for every index, then runs `task` on all of them.
#[allow(dead_code)]
fn on_gpus<B: TrainBackend, T: DevicesTask>(
    task: T,
    indices: &[usize],
    kind: BackendKind,
    device_of: impl Fn(usize) -> B::Device,
) -> Result<T::Output> {
    let mut devices = Vec::with_capacity(indices.len());
    for &i in indices {
        let device = device_of(i);
        probe::<B>(&device).map_err(|detail| unavailable(kind, i, indices.len(), &detail))?;
        devices.push(device);
    }
    task.run::<B>(devices)
}

/// The error for GPU `index` of `kind` that does not answer.
#[allow(dead_code)]
fn unavailable(kind: BackendKind, index: usize, count: usize, detail: &str) -> anyhow::Error {
    let which = if count == 1 {
        String::new()
    } else {
        format!(" device {index}")
    };
    match kind {
        BackendKind::Cuda => anyhow::anyhow!(
            "CUDA{which} is not available ({detail}); check the NVIDIA driver (`nvidia-smi`) or use --backend cpu"
        ),
        _ => anyhow::anyhow!(
            "no wgpu adapter found{which} ({detail}); install a Vulkan driver or use --backend cpu"
        ),
    }
}

// Unused in a build with every backend feature.
#[allow(dead_code)]
fn missing(kind: BackendKind) -> anyhow::Error {
    let feature = match kind {
        BackendKind::Cpu => "flex",
        other => other.name(),
    };
    anyhow::anyhow!(
        "this arcane-cli was built without the {} backend; rebuild with \
         `cargo build --release -p arcane-cli --features {feature}`",
        kind.name()
    )
}

/// The GPU's name as nvidia-smi reports it (for the MFU peak table), if it can be asked.
pub fn nvidia_gpu_name(index: usize) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name",
            "--format=csv,noheader",
            &format!("--id={index}"),
        ])
        .output()
        .ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// Runs one tiny operation on `device`, turning the panic that Burn raises when the driver or
/// adapter is missing (possibly on one of its worker threads) into an error message.
#[allow(dead_code)]
fn probe<B: Backend>(device: &B::Device) -> std::result::Result<(), String> {
    use std::sync::{Arc, Mutex};
    let first_panic: Arc<Mutex<Option<String>>> = Arc::default();
    let hook = std::panic::take_hook();
    let record = first_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked at start-up".into());
        record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(message);
    }));
    let device = device.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let x = Tensor::<B, 1>::ones([4], &device);
        x.sum().into_scalar().elem::<f32>()
    }));
    std::panic::set_hook(hook);
    let first = first_panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    match result {
        Ok(v) if v == 4.0 => Ok(()),
        Ok(v) => Err(format!("a test sum gave {v} instead of 4")),
        // The first line, without cudarc's list of every library name it tried.
        Err(_) => Err(first
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .split(" - searched")
            .next()
            .unwrap_or_default()
            .to_string()),
    }
}
