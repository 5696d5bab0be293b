//! The training pieces on their own: parameter groups, global-norm clipping, gradient
//! accumulation, weight decay and a loss that goes down.

mod common;

use arcane::data::Batch;
use arcane::training::{
    clip_global_norm, lm_loss, GroupedAdamW, LmBatch, OptimizerConfig, ParamGroups,
};
use arcane::{Gpt, ModelConfig};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::TrainStep;
use common::*;

type B = TestAutodiff;

fn tiny(seed: u64) -> Gpt<B> {
    let device = Default::default();
    <B as Backend>::seed(&device, seed);
    ModelConfig::tiny().init::<B>(&device).unwrap()
}

/// A deterministic batch of `b` windows of `t + 1` tokens below 256.
fn batch(b: usize, t: usize, offset: u32) -> Batch {
    let tokens = (0..b * (t + 1))
        .map(|i| ((i as u32 * 37 + offset) * 11) % 256)
        .collect();
    Batch {
        tokens,
        batch_size: b,
        seq_len: t,
    }
}

#[test]
fn matrices_decay_and_biases_and_gains_do_not() {
    let model = tiny(0);
    let groups = ParamGroups::of(&model, true);
    for name in [
        "wte.weight",
        "wpe.weight",
        "blocks.0.attn.q.weight",
        "blocks.1.mlp.proj.weight",
    ] {
        assert!(
            groups.decay.contains(&name.to_string()),
            "{name} should decay"
        );
    }
    for name in [
        "blocks.0.attn.q.bias",
        "blocks.0.ln1.weight",
        "blocks.0.ln1.bias",
        "ln_f.weight",
        "ln_f.bias",
        "blocks.1.mlp.fc.bias",
    ] {
        assert!(
            groups.no_decay.contains(&name.to_string()),
            "{name} should not decay"
        );
    }
    // 2 embeddings + 6 matrices per block; everything else is 1-D.
    assert_eq!(groups.decay.len(), 2 + 6 * 2);
    let without = ParamGroups::of(&model, false);
    assert!(without.no_decay.contains(&"wte.weight".to_string()) && without.decay.len() == 12);
}

/// Gradients by path as host vectors.
struct GradValues<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for GradValues<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            self.out.push((self.path.join("."), values(g)));
        }
    }
}

fn grad_values(model: &Gpt<B>, grads: &GradientsParams) -> Vec<(String, Vec<f32>)> {
    let mut v = GradValues {
        grads,
        path: vec![],
        out: vec![],
    };
    model.visit(&mut v);
    v.out
}

fn grads_of(model: &Gpt<B>, batch: &Batch, scale: f64) -> GradientsParams {
    TrainStep::step(model, LmBatch::<B>::new(batch, scale, &Default::default())).grads
}

#[test]
fn clipping_uses_the_global_norm_over_all_parameters() {
    let model = tiny(1);
    let mut grads = grads_of(&model, &batch(2, 16, 0), 1.0);
    let before = grad_values(&model, &grads);
    let norm: f64 = before
        .iter()
        .flat_map(|(_, g)| g.iter())
        .map(|&x| (x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let reported = clip_global_norm(&model, &mut grads, norm / 4.0);
    assert!(
        (reported - norm).abs() < 1e-4 * norm,
        "reported {reported}, computed {norm}"
    );
    let after = grad_values(&model, &grads);
    let clipped: f64 = after
        .iter()
        .flat_map(|(_, g)| g.iter())
        .map(|&x| (x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        (clipped - norm / 4.0).abs() < 1e-4 * norm,
        "clipped norm {clipped}, wanted {}",
        norm / 4.0
    );
    // Every tensor is scaled by the same factor (not clipped on its own).
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x / 4.0 - y).abs() <= 1e-5 * x.abs().max(1e-3),
                "{name}: {x} -> {y}"
            );
        }
    }
    // Below the limit nothing changes.
    let mut grads = grads_of(&model, &batch(2, 16, 0), 1.0);
    clip_global_norm(&model, &mut grads, norm * 2.0);
    assert_eq!(grad_values(&model, &grads), before);
}

#[test]
fn accumulated_micro_batches_give_the_mean_gradient() {
    let model = tiny(2);
    let full = batch(4, 16, 5);
    let half = |i: usize| {
        let w = 17;
        Batch {
            tokens: full.tokens[i * 2 * w..(i + 1) * 2 * w].to_vec(),
            batch_size: 2,
            seq_len: 16,
        }
    };
    let whole = grad_values(&model, &grads_of(&model, &full, 1.0));
    let mut accumulator = burn::optim::GradientsAccumulator::<Gpt<B>>::new();
    for i in 0..2 {
        accumulator.accumulate(&model, grads_of(&model, &half(i), 0.5));
    }
    let accumulated = grad_values(&model, &accumulator.grads());
    for ((name, a), (_, b)) in whole.iter().zip(&accumulated) {
        let diff = max_abs_diff(a, b);
        assert!(
            diff < 1e-5,
            "{name}: accumulated gradient differs by {diff}"
        );
    }
}

/// Zero gradients for every parameter.
struct Zeros<'a> {
    grads: &'a mut GradientsParams,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Zeros<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let zeros = param.val().inner().zeros_like();
        self.grads.register::<AB::InnerBackend, D>(param.id, zeros);
    }
}

#[test]
fn weight_decay_touches_only_the_decay_group() {
    let model = tiny(3);
    let config = OptimizerConfig {
        weight_decay: 0.5,
        ..OptimizerConfig::default()
    };
    let mut optim = GroupedAdamW::new(&config, &model);
    let before = arcane::weights::collect(&model);
    let mut grads = GradientsParams::new();
    model.visit(&mut Zeros { grads: &mut grads });
    let lr = 0.1;
    let after = arcane::weights::collect(&optim.step(lr, model.clone(), grads));
    let groups = ParamGroups::of(&model, true);
    for (name, t) in &before {
        let factor = if groups.decay.contains(name) {
            1.0 - lr as f32 * 0.5
        } else {
            1.0
        };
        let expected: Vec<f32> = t.values.iter().map(|v| v * factor).collect();
        let diff = max_abs_diff(&expected, &after[name].values);
        assert!(diff < 1e-6, "{name}: decoupled decay off by {diff}");
    }
}

#[test]
fn the_loss_goes_down_on_a_fixed_batch() {
    let mut model = tiny(4);
    let mut optim = GroupedAdamW::new(
        &OptimizerConfig {
            max_lr: 1e-2,
            weight_decay: 0.0,
            ..OptimizerConfig::default()
        },
        &model,
    );
    let data = batch(4, 32, 9);
    let device = Default::default();
    let loss_of = |m: &Gpt<B>| {
        let b = LmBatch::<B>::new(&data, 1.0, &device);
        values(lm_loss(m, b.inputs, b.targets))[0]
    };
    let first = loss_of(&model);
    assert!(
        (first - (256f32).ln()).abs() < 0.3,
        "a fresh model predicts ~uniformly: {first}"
    );
    for _ in 0..40 {
        let mut grads = grads_of(&model, &data, 1.0);
        clip_global_norm(&model, &mut grads, 1.0);
        model = optim.step(3e-3, model, grads);
    }
    let last = loss_of(&model);
    assert!(
        last < 0.5 * first,
        "40 steps on one batch: {first} -> {last}"
    );
}
