//! Properties of the architecture that hold for any weights: RoPE algebra, GPT-2 init, cache
//! equivalence for every variant, and activation checkpointing's gradients.

mod common;

use arcane::model::{CacheMask, KvCache, MlpKind, ModelConfig, NormKind, PositionEncoding, Rope};
use arcane::Gpt;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use common::*;

fn random<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn rope_preserves_vector_norms() {
    let device = Default::default();
    let rope = Rope::<TestBackend>::new(64, 16, 10_000.0, None, &device);
    let x = random::<TestBackend, 4>([2, 3, 20, 16], &device);
    let before = values(x.clone().square().sum_dim(3));
    let after = values(rope.apply(x, 7).square().sum_dim(3));
    assert!(max_abs_diff(&before, &after) < 1e-4);
}

#[test]
fn rope_scores_depend_only_on_the_offset() {
    let device = Default::default();
    let rope = Rope::<TestBackend>::new(128, 8, 10_000.0, None, &device);
    let q = random::<TestBackend, 4>([1, 1, 1, 8], &device);
    let k = random::<TestBackend, 4>([1, 1, 1, 8], &device);
    let score = |m: usize, n: usize| {
        let (qm, kn) = (rope.apply(q.clone(), m), rope.apply(k.clone(), n));
        values((qm * kn).sum())[0]
    };
    for (m, n, shift) in [(5, 2, 40), (0, 0, 100), (9, 30, 17)] {
        let (a, b) = (score(m, n), score(m + shift, n + shift));
        assert!(
            (a - b).abs() < 1e-4,
            "q·k at ({m},{n}) = {a}, shifted by {shift} = {b}"
        );
    }
    // And it does depend on the offset (RoPE is not the identity).
    assert!((score(5, 2) - score(5, 3)).abs() > 1e-4);
}

/// Every float parameter's values, by path.
fn params<B: Backend>(model: &Gpt<B>) -> arcane::weights::NamedTensors {
    arcane::weights::collect(model)
}

fn std_dev(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn gpt2_initialisation() {
    let device = Default::default();
    TestBackend::seed(&device, 0);
    let config = ModelConfig {
        d_model: 128,
        n_layers: 8,
        ..ModelConfig::tiny()
    };
    let p = params(&config.init::<TestBackend>(&device).unwrap());
    let residual = 0.02 / (2.0f64 * 8.0).sqrt();
    for (name, t) in &p {
        let s = std_dev(&t.values);
        if name.ends_with("bias") {
            assert!(t.values.iter().all(|&x| x == 0.0), "{name} is not zero");
        } else if name.contains("ln") {
            assert!(t.values.iter().all(|&x| x == 1.0), "{name} is not one");
        } else if name.ends_with("attn.o.weight") || name.ends_with("mlp.proj.weight") {
            assert!(
                (s / residual - 1.0).abs() < 0.1,
                "{name}: std {s}, expected {residual}"
            );
        } else {
            assert!(
                (s / 0.02 - 1.0).abs() < 0.1,
                "{name}: std {s}, expected 0.02"
            );
        }
    }
    assert!(p.contains_key("wpe.weight") && !p.contains_key("lm_head.weight"));
}

/// Small configs covering every architectural switch.
fn variants() -> Vec<ModelConfig> {
    let tiny = ModelConfig::tiny;
    vec![
        tiny(),
        ModelConfig {
            mlp: MlpKind::Gelu,
            tie_embeddings: false,
            ..tiny()
        },
        ModelConfig {
            positions: PositionEncoding::Rope,
            norm: NormKind::RmsNorm,
            mlp: MlpKind::Swiglu,
            mlp_hidden: Some(96),
            bias: false,
            norm_bias: false,
            n_kv_heads: Some(2),
            ..tiny()
        },
        ModelConfig {
            norm_bias: false,
            n_kv_heads: Some(1),
            ..tiny()
        },
    ]
}

#[test]
fn every_variant_decodes_with_the_cache_as_it_forwards() {
    let device = Default::default();
    for (i, config) in variants().into_iter().enumerate() {
        TestBackend::seed(&device, i as u64);
        let model = config.init::<TestBackend>(&device).unwrap();
        let seq: Vec<u32> = (0..20).map(|t| (t * 37 + i as u32) % 256).collect();
        let full = values(model.forward(tokens(&seq, &device)));
        assert_eq!(full.len(), 20 * 256);
        let mut cache = model.new_cache();
        let mut stepped = values(model.forward_cached(tokens(&seq[..5], &device), &mut cache));
        for &id in &seq[5..] {
            stepped.extend(values(
                model.forward_cached(tokens(&[id], &device), &mut cache),
            ));
        }
        let diff = max_abs_diff(&full, &stepped);
        assert!(
            diff < tol(1e-5),
            "variant {i}: cached decoding differs by {diff}"
        );
        assert_eq!(
            model.num_params(),
            config.num_params(),
            "variant {i}: parameter count formula"
        );
    }
}

/// Logits of `seq` fed through a cache growing `bucket` positions at a time, in `chunks`.
fn chunked_logits<B: Backend>(
    model: &Gpt<B>,
    seq: &[u32],
    chunks: &[usize],
    bucket: usize,
) -> (Vec<f32>, Vec<CacheMask>) {
    let device = model.device();
    let c = model.config();
    let mut cache = KvCache::with_bucket(c.n_layers, c.max_seq_len, bucket);
    let (mut out, mut masks, mut at) = (Vec::new(), Vec::new(), 0);
    for &n in chunks {
        masks.push(cache.mask_for(n));
        out.extend(values(
            model.forward_cached(tokens(&seq[at..at + n], &device), &mut cache),
        ));
        at += n;
    }
    assert_eq!(cache.len(), seq.len());
    (out, masks)
}

#[test]
fn chunked_prefill_with_explicit_masks_matches_full_forward() {
    let device = Default::default();
    let chunks = [4, 1, 6, 2, 7];
    for (i, config) in variants().into_iter().enumerate() {
        TestBackend::seed(&device, 10 + i as u64);
        let model = config.init::<TestBackend>(&device).unwrap();
        let seq: Vec<u32> = (0..20).map(|t| (t * 53 + 7 * i as u32) % 256).collect();
        let full = values(model.forward(tokens(&seq, &device)));
        for bucket in [1, 3, 8, 256] {
            let (stepped, masks) = chunked_logits(&model, &seq, &chunks, bucket);
            let diff = max_abs_diff(&full, &stepped);
            assert!(
                diff < tol(1e-5),
                "variant {i}, bucket {bucket}: chunked prefill differs by {diff}"
            );
            // Chunks after the first attend over cached keys with an explicit mask.
            assert!(
                matches!(masks[2], CacheMask::Explicit { start: 5, .. }),
                "{masks:?}"
            );
        }
    }
}

#[test]
fn cache_masks_hide_the_future_and_the_unwritten_positions() {
    let mut cache = KvCache::<TestBackend>::with_bucket(1, 64, 4);
    // An empty cache and a prefill that fills its bucket exactly: the ordinary causal mask.
    assert_eq!(cache.mask_for(4), CacheMask::Causal);
    assert_eq!(cache.mask_for(3), CacheMask::Explicit { start: 0, cap: 4 });
    assert_eq!(cache.capacity_for(5), 8);
    assert_eq!(cache.capacity_for(63), 64);
    cache.advance(3);
    let mask = CacheMask::Explicit { start: 3, cap: 8 };
    assert_eq!(cache.mask_for(2), mask);
    let t = mask
        .tensor::<TestBackend>(2, 2, None, &Default::default())
        .unwrap();
    assert_eq!(t.dims(), [1, 1, 4, 8]);
    let hidden: Vec<bool> = t.into_data().to_vec().unwrap();
    // Rows: (group 0, query 0), (group 0, query 1), (group 1, query 0), (group 1, query 1).
    let row = |start: usize| -> Vec<bool> { (0..8).map(|j| j > start).collect() };
    let expected: Vec<bool> = [3, 4, 3, 4].into_iter().flat_map(row).collect();
    assert_eq!(hidden, expected);
    // One new token over exactly the written keys needs no mask at all.
    let exact = KvCache::<TestBackend>::with_bucket(1, 64, 1);
    assert_eq!(exact.mask_for(1), CacheMask::Causal);
    let mut exact = exact;
    exact.advance(5);
    assert_eq!(exact.mask_for(1), CacheMask::None);
}

#[test]
fn a_right_padded_prefill_then_truncate_decodes_exactly() {
    let device = Default::default();
    for (i, config) in variants().into_iter().enumerate() {
        TestBackend::seed(&device, 20 + i as u64);
        let model = config.init::<TestBackend>(&device).unwrap();
        let seq: Vec<u32> = (0..12).map(|t| (t * 29 + 3 * i as u32) % 256).collect();
        let full = values(model.forward(tokens(&seq, &device)));
        let v = config.vocab_size;
        // The 5-token prompt padded with junk to 8 tokens (a fixed prefill shape).
        let mut padded = seq[..5].to_vec();
        padded.extend([255, 0, 17]);
        let mut cache = model.new_cache();
        let prefill = values(model.forward_cached(tokens(&padded, &device), &mut cache));
        cache.truncate(5);
        let mut stepped = prefill[..5 * v].to_vec();
        for &id in &seq[5..] {
            stepped.extend(values(
                model.forward_cached(tokens(&[id], &device), &mut cache),
            ));
        }
        let diff = max_abs_diff(&full, &stepped);
        assert!(
            diff < tol(1e-5),
            "variant {i}: padded prefill differs by {diff}"
        );
    }
}

/// Loss gradients of every parameter, by path.
struct GradCollector<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradCollector<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = param
            .val()
            .grad(self.grads)
            .expect("every parameter has a gradient");
        self.out.push((self.path.join("."), values(grad)));
    }
}

fn loss_gradients<B: AutodiffBackend>(
    dir: &std::path::Path,
    seq: &[u32],
) -> Vec<(String, Vec<f32>)> {
    let device = Default::default();
    let model: Gpt<B> = arcane::load_model(dir, &device).unwrap();
    let logits = model.forward(tokens(&seq[..seq.len() - 1], &device)); // [1, T, V]
    let [_, t, v] = logits.dims();
    let targets = tokens::<B>(&seq[1..], &device).reshape([t]);
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.reshape([t, v]), targets);
    let grads = loss.backward();
    let mut collector = GradCollector {
        grads: &grads,
        path: vec![],
        out: vec![],
    };
    model.visit(&mut collector);
    collector.out
}

#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    let seq: Vec<u32> = (0..24).map(|t| (t * 53) % 512).collect();
    let dir = fixture("llama");
    let plain = loss_gradients::<Autodiff<TestBackend>>(&dir, &seq);
    let recomputed = loss_gradients::<Autodiff<TestBackend, BalancedCheckpointing>>(&dir, &seq);
    assert_eq!(plain.len(), recomputed.len());
    for ((name, a), (_, b)) in plain.iter().zip(&recomputed) {
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-6, "{name}: gradients differ by {diff}");
        assert!(a.iter().any(|&g| g != 0.0), "{name}: zero gradient");
    }
}
