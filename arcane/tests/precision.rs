//! bf16 mixed precision: bf16 activations, f32 master weights and AdamW moments, f32 loss, and
//! a loss curve that follows f32's (CPU backend, which computes bf16 products through f32).

mod common;

use arcane::data::Batch;
use arcane::model::Precision;
use arcane::training::{clip_global_norm, GroupedAdamW, LmBatch, OptimizerConfig};
use arcane::{Gpt, ModelConfig};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType};
use burn::train::TrainStep;
use common::*;

type B = TestAutodiff;

fn tiny(precision: Precision) -> Gpt<B> {
    let device = Default::default();
    <B as Backend>::seed(&device, 7);
    let mut model = ModelConfig::tiny().init::<B>(&device).unwrap();
    model.precision = precision;
    model
}

fn batch(offset: u32) -> Batch {
    let (b, t) = (4, 32);
    let tokens = (0..b * (t + 1))
        .map(|i| ((i as u32 * 37 + offset) * 11) % 256)
        .collect();
    Batch {
        tokens,
        batch_size: b,
        seq_len: t,
    }
}

/// The dtype of every float parameter of a module, and of its gradient when `grads` is given.
struct Dtypes<'a> {
    grads: Option<&'a GradientsParams>,
    params: Vec<DType>,
    grads_seen: Vec<DType>,
}

impl<Bk: AutodiffBackend> ModuleVisitor<Bk> for Dtypes<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        self.params.push(param.val().dtype());
        if let Some(g) = self
            .grads
            .and_then(|g| g.get::<Bk::InnerBackend, D>(param.id))
        {
            self.grads_seen.push(g.dtype());
        }
    }
}

fn one_step(
    model: Gpt<B>,
    optim: &mut GroupedAdamW<Gpt<B>, B>,
    lr: f64,
    offset: u32,
) -> (Gpt<B>, f64) {
    let device = model.device();
    let output = TrainStep::step(&model, LmBatch::<B>::new(&batch(offset), 1.0, &device));
    let loss = output.item.loss.clone().into_scalar().elem::<f64>();
    let mut grads = output.grads;
    clip_global_norm(&model, &mut grads, 1.0);
    (optim.step(lr, model, grads), loss)
}

#[test]
fn bf16_computes_in_bf16_and_keeps_f32_weights_gradients_and_loss() {
    let model = tiny(Precision::Bf16);
    let device = model.device();
    let tokens =
        Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4], [1, 4]), &device);
    assert_eq!(
        model.forward_hidden(tokens.clone(), None).dtype(),
        DType::BF16
    );
    assert_eq!(model.forward(tokens).dtype(), DType::BF16);
    let b = LmBatch::<B>::new(&batch(0), 1.0, &device);
    let loss = arcane::training::lm_loss(&model, b.inputs.clone(), b.targets.clone());
    assert_eq!(loss.dtype(), DType::F32, "the loss is computed in f32");

    let output = TrainStep::step(&model, b);
    let mut seen = Dtypes {
        grads: Some(&output.grads),
        params: vec![],
        grads_seen: vec![],
    };
    model.visit(&mut seen);
    assert!(
        seen.params.iter().all(|d| *d == DType::F32),
        "{:?}",
        seen.params
    );
    assert_eq!(seen.grads_seen.len(), seen.params.len());
    assert!(
        seen.grads_seen.iter().all(|d| *d == DType::F32),
        "{:?}",
        seen.grads_seen
    );

    let mut optim = GroupedAdamW::new(&OptimizerConfig::default(), &model);
    let model = optim.step(1e-3, model, output.grads);
    let mut after = Dtypes {
        grads: None,
        params: vec![],
        grads_seen: vec![],
    };
    model.visit(&mut after);
    assert!(after.params.iter().all(|d| *d == DType::F32));
}

#[test]
fn updates_below_a_bf16_ulp_reach_the_f32_master_weights() {
    let model = tiny(Precision::Bf16);
    let before: Vec<f32> = values(model.blocks[0].attn.q.weight.val());
    let mut optim = GroupedAdamW::new(&OptimizerConfig::default(), &model);
    // Adam's first step moves each weight by about lr; 1e-6 is far below bf16's resolution
    // (2^-8 relative, ~8e-5 for weights of size ~0.02) and far above f32's (~2e-9).
    let (model, _) = one_step(model, &mut optim, 1e-6, 0);
    let after: Vec<f32> = values(model.blocks[0].attn.q.weight.val());
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        changed > before.len() * 9 / 10,
        "{changed} of {} f32 weights moved",
        before.len()
    );
    let bf16 = |v: &[f32]| -> Vec<u16> {
        v.iter()
            .map(|x| half::bf16::from_f32(*x).to_bits())
            .collect()
    };
    let (b0, b1) = (bf16(&before), bf16(&after));
    let same = b0.iter().zip(&b1).filter(|(a, b)| a == b).count();
    assert!(
        same > before.len() * 9 / 10,
        "a bf16 copy would have lost the update: only {same} of {} unchanged",
        before.len()
    );
    // The next forward computes with the updated master weights, not a stale bf16 copy: it is
    // bitwise the forward of a fresh model holding those f32 weights.
    let device = model.device();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![5i64, 6, 7], [1, 3]), &device);
    let mut fresh = tiny(Precision::Bf16);
    fresh = fresh.load_record(model.clone().into_record());
    assert_eq!(
        values(model.forward(tokens.clone()).cast(FloatDType::F32)),
        values(fresh.forward(tokens).cast(FloatDType::F32))
    );
}

#[test]
fn the_bf16_loss_curve_follows_f32() {
    let run = |precision| {
        let mut model = tiny(precision);
        let config = OptimizerConfig {
            max_lr: 3e-3,
            ..OptimizerConfig::default()
        };
        let mut optim = GroupedAdamW::new(&config, &model);
        let mut losses = vec![];
        for step in 0..40 {
            let (next, loss) = one_step(model, &mut optim, 3e-3, step % 4);
            model = next;
            losses.push(loss);
        }
        losses
    };
    let (f32_losses, bf16_losses) = (run(Precision::F32), run(Precision::Bf16));
    let tail = |l: &[f64]| l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    let (a, b) = (tail(&f32_losses), tail(&bf16_losses));
    assert!(a < f32_losses[0] - 1.0, "f32 learns: {f32_losses:?}");
    assert!(b < bf16_losses[0] - 1.0, "bf16 learns: {bf16_losses:?}");
    assert!(
        (a - b).abs() < 0.05 * a,
        "final loss f32 {a:.4} vs bf16 {b:.4}"
    );
}
