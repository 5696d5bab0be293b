//! The attention kernels that autotune can pick on a GPU, called directly on lavapipe with the
//! shapes and masks Arcane passes (so the result does not depend on which one autotune picks
//! here): Burn's fallback (matmul, mask, softmax, matmul), cubek's "unit" flash attention, and
//! autotune itself, against a softmax on the host in f64. Tolerances per kernel: the fallback
//! computes in f32, 1e-5 absolute (the softmax weights sum to 1, so the output has the values'
//! scale, here below 1); cubek 0.2's flash kernels round queries, keys, values and the softmax
//! weights to f16 tiles even for f32 tensors (`AttentionElems::from_global_types` is given
//! f16 as the tile type by `routines/unit.rs`), so flash and autotune (which may pick it),
//! 2e-3: a few f16 roundings (4.9e-4 relative each) of values below 1.
//!
//! Not reachable here: cubek's "blackbox accelerated" flash attention (tensor cores), which
//! lavapipe's lack of cooperative matrices rules out.

use arcane::model::CacheMask;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::TensorPrimitive;
use burn_cubecl::kernel::attention::{attention, AttentionStrategy};
use burn_wgpu::{CubeBackend, WgpuRuntime};

use super::*;
use crate::common::values;

/// Burn's wgpu backend without fusion: the kernels' own entry point.
type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;

/// Tolerance of the f32 fallback.
const TOL_F32: f32 = 1e-5;
/// Tolerance of cubek's flash kernels (f16 tiles), and of autotune, which may pick them.
const TOL_FLASH: f32 = 2e-3;

/// One attention problem: `[1, H, R, D]` queries over `[1, H, S, D]` keys and values, and
/// which key each query row sees.
struct Case {
    name: String,
    heads: usize,
    rows: usize,
    keys: usize,
    dim: usize,
    mask: Option<Vec<bool>>,
    is_causal: bool,
    visible: Box<dyn Fn(usize, usize) -> bool>,
}

fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 2.0)
        .collect()
}

/// softmax(q kᵀ / √D) v over the visible keys, on the host in f64.
fn reference(c: &Case, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let (r, s, d) = (c.rows, c.keys, c.dim);
    let mut out = vec![0f32; c.heads * r * d];
    for h in 0..c.heads {
        for i in 0..r {
            let qi = &q[(h * r + i) * d..][..d];
            let scores: Vec<Option<f64>> = (0..s)
                .map(|j| {
                    (c.visible)(i, j).then(|| {
                        let kj = &k[(h * s + j) * d..][..d];
                        qi.iter().zip(kj).map(|(a, b)| (a * b) as f64).sum::<f64>()
                            / (d as f64).sqrt()
                    })
                })
                .collect();
            let max = scores.iter().flatten().fold(f64::MIN, |m, &x| m.max(x));
            let weights: Vec<f64> = scores
                .iter()
                .map(|x| x.map_or(0.0, |x| (x - max).exp()))
                .collect();
            let total: f64 = weights.iter().sum();
            for e in 0..d {
                let y: f64 = (0..s)
                    .map(|j| weights[j] * v[(h * s + j) * d + e] as f64)
                    .sum();
                out[(h * r + i) * d + e] = (y / total) as f32;
            }
        }
    }
    out
}

/// Runs `case` with `strategy` on lavapipe.
fn run(
    c: &Case,
    strategy: AttentionStrategy,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Result<Vec<f32>, String> {
    let device = gpu();
    let tensor = |x: &[f32], rows: usize| {
        Tensor::<Cube, 4>::from_data(
            TensorData::new(x.to_vec(), [1, c.heads, rows, c.dim]),
            &device,
        )
        .into_primitive()
        .tensor()
    };
    // One contiguous copy per head (a broadcast view would test stride handling instead).
    let mask = c.mask.as_ref().map(|m| {
        let all: Vec<bool> = (0..c.heads).flat_map(|_| m.iter().copied()).collect();
        Tensor::<Cube, 4, Bool>::from_data(
            TensorData::new(all, [1, c.heads, c.rows, c.keys]),
            &device,
        )
        .into_primitive()
    });
    let options = AttentionModuleOptions {
        is_causal: c.is_causal,
        ..Default::default()
    };
    let out = attention(
        tensor(q, c.rows),
        tensor(k, c.keys),
        tensor(v, c.keys),
        mask,
        None,
        options,
        strategy,
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(values(Tensor::<Cube, 4>::from_primitive(
        TensorPrimitive::Float(out),
    )))
}

/// The cases Arcane's attention produces (see `model/attention.rs` and `model/kv_cache.rs`).
fn arcane_cases(dim: usize) -> Vec<Case> {
    let mut cases = vec![
        // attend_causal, and the cache's `Causal`: queries and keys are the same span.
        Case {
            name: "square causal 12x12".into(),
            heads: 2,
            rows: 12,
            keys: 12,
            dim,
            mask: None,
            is_causal: true,
            visible: Box::new(|i, j| j <= i),
        },
        // The cache's `None`: one token that sees a full bucket.
        Case {
            name: "one query, no mask, 16 keys".into(),
            heads: 2,
            rows: 1,
            keys: 16,
            dim,
            mask: None,
            is_causal: false,
            visible: Box::new(|_, _| true),
        },
    ];
    // The cache's `Explicit` masks, as Arcane builds them: a one-token query inside a bucket,
    // a 3-token chunk with 2 query heads per key head folded into the rows, and a window.
    for (start, t, groups, window) in [(9, 1, 1, None), (5, 3, 2, None), (10, 3, 2, Some(4))] {
        let mask = CacheMask::Explicit { start, cap: 16 }
            .tensor::<Cpu>(t, groups, window, &Default::default())
            .unwrap();
        let w = window.unwrap_or(usize::MAX);
        cases.push(Case {
            name: format!(
                "explicit mask: {t} queries at {start}, {groups} groups, window {window:?}"
            ),
            heads: 2,
            rows: groups * t,
            keys: 16,
            dim,
            mask: Some(mask.into_data().to_vec::<bool>().unwrap()),
            is_causal: false,
            visible: Box::new(move |r, j| j <= start + r % t && start + r % t - j < w),
        });
    }
    cases
}

#[test]
fn every_attention_kernel_gives_arcanes_masks_on_lavapipe() {
    for dim in [8, 16] {
        for c in arcane_cases(dim) {
            let (q, k, v) = (
                data(c.heads * c.rows * dim, 1),
                data(c.heads * c.keys * dim, 2),
                data(c.heads * c.keys * dim, 3),
            );
            let expected = reference(&c, &q, &k, &v);
            for (label, strategy, tol) in [
                ("fallback", AttentionStrategy::Fallback, TOL_F32),
                ("flash unit", AttentionStrategy::FlashUnit, TOL_FLASH),
                ("autotune", AttentionStrategy::Autotune, TOL_FLASH),
            ] {
                let out = run(&c, strategy, &q, &k, &v)
                    .unwrap_or_else(|e| panic!("{label} cannot run {} (D={dim}): {e}", c.name));
                assert_close(
                    &format!("{label}, {}, D={dim}", c.name),
                    &out,
                    &expected,
                    tol,
                );
            }
        }
    }
}

/// `is_causal` with fewer queries than keys (the case that was wrong on CUDA): Burn's
/// fallback aligns the mask bottom-right (query i sees keys 0..=S-R+i), cubek 0.2's flash
/// kernels top-left (`causal && row < col` in `components/tile/mask.rs`), so the two disagree
/// and autotune's pick decides the answer. Arcane therefore never passes `is_causal` unless
/// queries and keys are the same span (an explicit mask otherwise: see the test above). This
/// test pins both behaviours: when a Burn upgrade fixes the kernel it fails, and the
/// restriction can go.
#[test]
fn causal_with_fewer_queries_than_keys_differs_between_kernels() {
    let (rows, keys, dim) = (4, 16, 8);
    let case = |visible: Box<dyn Fn(usize, usize) -> bool>| Case {
        name: "causal 4 queries over 16 keys".into(),
        heads: 2,
        rows,
        keys,
        dim,
        mask: None,
        is_causal: true,
        visible,
    };
    let bottom_right = case(Box::new(move |i, j| j <= keys - rows + i));
    let top_left = case(Box::new(|i, j| j <= i));
    let (q, k, v) = (
        data(2 * rows * dim, 4),
        data(2 * keys * dim, 5),
        data(2 * keys * dim, 6),
    );
    let fallback = run(&bottom_right, AttentionStrategy::Fallback, &q, &k, &v).unwrap();
    assert_close(
        "fallback, causal 4x16, bottom-right",
        &fallback,
        &reference(&bottom_right, &q, &k, &v),
        TOL_F32,
    );
    let flash = run(&bottom_right, AttentionStrategy::FlashUnit, &q, &k, &v).unwrap();
    let to_bottom_right = max_abs_diff(&flash, &reference(&bottom_right, &q, &k, &v));
    let to_top_left = max_abs_diff(&flash, &reference(&top_left, &q, &k, &v));
    eprintln!("flash unit, causal 4x16: {to_top_left:.2e} from top-left, {to_bottom_right:.2e} from bottom-right");
    assert!(
        to_top_left <= TOL_FLASH && to_bottom_right > 0.1,
        "cubek's flash kernel no longer aligns a causal mask top-left ({to_top_left} from it, \
         {to_bottom_right} from bottom-right): revisit Arcane's explicit masks"
    );
}
