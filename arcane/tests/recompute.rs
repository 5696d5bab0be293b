//! Activation checkpointing by block (`kernels::recompute`): the loss and every parameter's
//! gradient equal those of the plain backward pass, on the fused CPU path and the generic
//! one, for GPT-2 and Llama blocks, packed rows and LoRA; with dropout, the recomputation
//! draws the masks of the forward pass.

mod common;

use arcane::data::write_shard;
use arcane::kernels::{generic_only, recompute};
use arcane::lora::apply_lora;
use arcane::model::{LoraConfig, LoraTarget, Packing};
use arcane::training::{
    lm_loss, masked_lm_loss, read_metrics, train, LmBatch, MetricRecord, TrainOptions,
    TrainingConfig,
};
use arcane::{load_model, Gpt, ModelConfig};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::train::TrainStep;
use common::*;
use std::sync::{Mutex, MutexGuard};

type AD = TestAutodiff;

/// How the gradients are computed.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// One backward pass over the whole graph.
    Plain,
    /// Blocks cut and recomputed (`record` + `Tape::backward`).
    Checkpointed,
    /// Blocks seeded as `Checkpointed` seeds them, but kept (`record_uncut`).
    Uncut,
}

/// Every parameter's gradient, by path, in the model's order.
struct Collect<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor<AD> for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AD, D>>) {
        if let Some(grad) = self.grads.get::<TestBackend, D>(param.id) {
            self.out.push((self.path.join("."), values(grad)));
        }
    }
}

type Grads = Vec<(String, Vec<f32>)>;

fn collect(model: &Gpt<AD>, grads: &GradientsParams) -> Grads {
    let mut collector = Collect {
        grads,
        path: vec![],
        out: vec![],
    };
    model.visit(&mut collector);
    collector.out
}

/// Two rows of 16 tokens and their next tokens.
fn batch(model: &Gpt<AD>) -> (Tensor<AD, 2, Int>, Tensor<AD, 2, Int>) {
    let v = model.config().vocab_size;
    let ids: Vec<i64> = (0..2 * 17).map(|i| ((i * 53 + 7) % v) as i64).collect();
    let rows: Vec<&[i64]> = ids.chunks(17).collect();
    let take = |r: std::ops::Range<usize>| {
        let data: Vec<i64> = rows
            .iter()
            .flat_map(|row| row[r.clone()].to_vec())
            .collect();
        Tensor::from_data(TensorData::new(data, [2, 16]), &model.device())
    };
    (take(0..16), take(1..17))
}

/// The CPU backend's RNG is one for the process: the tests of this file take turns.
fn rng_turn() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The loss of `forward` and the gradients of every parameter under it, computed by `mode`,
/// from the same RNG state.
fn run(model: &Gpt<AD>, mode: Mode, forward: impl FnOnce() -> Tensor<AD, 1>) -> (f32, Grads) {
    let _turn = rng_turn();
    AD::seed(&model.device(), 7);
    let (loss, grads) = match mode {
        Mode::Plain => {
            let loss = forward();
            let grads = GradientsParams::from_grads(loss.backward(), model);
            (loss, grads)
        }
        Mode::Uncut => {
            let loss = recompute::record_uncut::<AD, _>(forward);
            let grads = GradientsParams::from_grads(loss.backward(), model);
            (loss, grads)
        }
        Mode::Checkpointed => {
            let (loss, tape) = recompute::record::<AD, _>(forward);
            assert_eq!(
                tape.len(),
                model.blocks.len() + 1,
                "the stem and one segment per block"
            );
            let grads = tape.backward(loss.clone(), model);
            (loss, grads)
        }
    };
    (values(loss)[0], collect(model, &grads))
}

fn lm(model: &Gpt<AD>, mode: Mode) -> (f32, Grads) {
    let (inputs, targets) = batch(model);
    run(model, mode, || lm_loss(model, inputs, targets))
}

/// Asserts equal losses and gradients (relative to each gradient's largest entry), and that
/// the reference's gradients are not all zero. Returns the largest relative difference.
fn assert_same(reference: &(f32, Grads), other: &(f32, Grads), tol: f32) -> f32 {
    let ((loss_a, a), (loss_b, b)) = (reference, other);
    assert!(
        (loss_a - loss_b).abs() <= tol * loss_a.abs(),
        "losses {loss_a} vs {loss_b}"
    );
    let names = |g: &Grads| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "the same parameters have gradients");
    assert!(!a.is_empty());
    let mut worst = 0f32;
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: zero gradient");
        let diff = max_abs_diff(x, y) / scale;
        assert!(diff <= tol, "{name}: gradients differ by {diff} (relative)");
        worst = worst.max(diff);
    }
    worst
}

fn gpt2() -> Gpt<AD> {
    load_model(&fixture("gpt2"), &Default::default()).unwrap()
}

fn llama() -> Gpt<AD> {
    load_model(&fixture("llama"), &Default::default()).unwrap()
}

/// f32 tolerance: the recomputed blocks are the same kernels on the same inputs; only the
/// order of a few sums (a tied embedding's two shares) may differ.
const TOL: f32 = 1e-6;

#[test]
fn checkpointed_gradients_equal_plain_ones_on_the_fused_path() {
    for model in [gpt2(), llama()] {
        let plain = lm(&model, Mode::Plain);
        let worst = assert_same(&plain, &lm(&model, Mode::Checkpointed), TOL);
        println!(
            "{}: worst relative difference {worst:e}",
            model.config().d_model
        );
    }
}

#[test]
fn checkpointed_gradients_equal_plain_ones_on_the_generic_path() {
    generic_only(|| {
        for model in [gpt2(), llama()] {
            let plain = lm(&model, Mode::Plain);
            assert_same(&plain, &lm(&model, Mode::Checkpointed), TOL);
        }
    });
}

#[test]
fn checkpointing_is_a_flag_of_the_train_step() {
    let model = llama();
    let ids: Vec<u32> = (0..2 * 17).map(|i| (i * 31 + 5) % 500).collect();
    let data = arcane::data::Batch {
        tokens: ids,
        batch_size: 2,
        seq_len: 16,
    };
    let step = |checkpointing: bool| {
        let mut batch = LmBatch::<AD>::new(&data, 0.5, &Default::default());
        batch.activation_checkpointing = checkpointing;
        let output = TrainStep::step(&model, batch);
        (values(output.item.loss)[0], collect(&model, &output.grads))
    };
    assert_same(&step(false), &step(true), TOL);
}

/// Blocks with dropout `p` (residual branches and embeddings).
fn with_dropout(mut model: Gpt<AD>, p: f64) -> Gpt<AD> {
    let dropout = || -> Dropout { DropoutConfig::new(p).init() };
    model.config.dropout = p;
    model.dropout = dropout();
    for block in &mut model.blocks {
        block.dropout = dropout();
    }
    model
}

#[test]
fn recomputation_replays_dropout() {
    for path in [false, true] {
        let check = || {
            let model = with_dropout(gpt2(), 0.2);
            let uncut = lm(&model, Mode::Uncut);
            assert_same(&uncut, &lm(&model, Mode::Checkpointed), TOL);
            // The masks are drawn: without dropout the gradients differ.
            let plain = lm(&gpt2(), Mode::Plain);
            assert!((plain.0 - uncut.0).abs() > 1e-4, "dropout changed nothing");
        };
        if path {
            generic_only(check)
        } else {
            check()
        }
    }
}

fn lora(model: Gpt<AD>, dropout: f64) -> Gpt<AD> {
    let config = LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout,
        targets: LoraTarget::ALL.to_vec(),
    };
    let model = apply_lora(model, &config).unwrap();
    // The adapters' `A` are drawn from the RNG when first read: draw them now, not inside the
    // first of two runs that are to draw the same dropout masks.
    let _ = lm(&model, Mode::Plain);
    model
}

/// Like [`assert_same`] for gradients that may be zero (a fresh adapter's `A`: its `B` is
/// zero); at least one must not be.
fn assert_close(reference: &(f32, Grads), other: &(f32, Grads)) {
    assert_eq!(reference.0, other.0, "losses");
    let names = |g: &Grads| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&reference.1), names(&other.1));
    let mut nonzero = 0;
    for ((name, x), (_, y)) in reference.1.iter().zip(&other.1) {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        nonzero += usize::from(scale > 0.0);
        let diff = max_abs_diff(x, y);
        assert!(
            diff <= TOL * scale,
            "{name}: differ by {diff}, largest {scale}"
        );
    }
    assert!(nonzero > 0, "all gradients are zero");
}

#[test]
fn checkpointing_trains_lora_adapters() {
    let model = lora(llama(), 0.0);
    assert_close(&lm(&model, Mode::Plain), &lm(&model, Mode::Checkpointed));
}

#[test]
fn recomputation_replays_adapter_dropout() {
    let model = lora(llama(), 0.3);
    assert_close(&lm(&model, Mode::Uncut), &lm(&model, Mode::Checkpointed));
}

#[test]
fn checkpointed_packed_rows_give_the_plain_gradients() {
    let model = llama();
    let (inputs, targets) = batch(&model);
    // Row 0: two examples (10 + 6 tokens); row 1: one example and 4 padding tokens.
    let segments = vec![
        (0..16).map(|i| i64::from(i >= 10)).collect::<Vec<_>>(),
        (0..16).map(|i| if i < 12 { 0 } else { -1 - i }).collect(),
    ];
    let packing = Packing::<AD>::from_segments(&segments, &model.device());
    let rows: Vec<i64> = (0..12).chain(16..28).collect();
    let rows = Tensor::<AD, 1, Int>::from_data(TensorData::new(rows, [24]), &model.device());
    let loss = |mode| {
        let (inputs, targets, rows) = (inputs.clone(), targets.clone(), rows.clone());
        run(&model, mode, || {
            masked_lm_loss(&model, inputs, targets, rows, Some(&packing)).0
        })
    };
    assert_same(&loss(Mode::Plain), &loss(Mode::Checkpointed), TOL);
}

/// The training loop's losses and final weights on a tiny model, with the config's
/// `activation_checkpointing` and block dropout `dropout`.
fn train_run(checkpointing: bool, dropout: f64) -> (Vec<f64>, Vec<(String, Vec<f32>)>) {
    let tmp = tempfile::tempdir().unwrap();
    let tokens: Vec<u16> = (0..12_000u32)
        .map(|i| ((i * 7 + i / 13) % 256) as u16)
        .collect();
    write_shard(&tmp.path().join("train_000000.bin"), &tokens[..10_000]).unwrap();
    write_shard(&tmp.path().join("val_000000.bin"), &tokens[10_000..]).unwrap();
    let config = TrainingConfig {
        model: ModelConfig {
            max_seq_len: 32,
            dropout,
            ..ModelConfig::tiny()
        },
        micro_batch: 2,
        tokens_per_step: 2 * 2 * 32,
        max_steps: 3,
        eval_every: 3,
        eval_tokens: 128,
        checkpoint_every: 3,
        sample_tokens: 0,
        activation_checkpointing: checkpointing,
        ..TrainingConfig::tiny_cpu()
    };
    let run = tmp.path().join("run");
    let mut options = TrainOptions::<AD>::new(run.clone(), tmp.path());
    options.dashboard = Some(false);
    {
        let _turn = rng_turn();
        train(config, options, Default::default()).unwrap();
    }
    let losses = read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            MetricRecord::Train { loss, .. } => Some(loss),
            _ => None,
        })
        .collect();
    let mut weights: Vec<_> = arcane::weights::read_safetensors(&[run.join("model.safetensors")])
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.values))
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    (losses, weights)
}

#[test]
fn the_training_loop_checkpoints_when_its_config_says_so() {
    let (plain, plain_weights) = train_run(false, 0.0);
    let (checkpointed, weights) = train_run(true, 0.0);
    assert_eq!(plain.len(), 3);
    for (a, b) in plain.iter().zip(&checkpointed) {
        assert!((a - b).abs() < 1e-6, "losses {plain:?} vs {checkpointed:?}");
    }
    for ((name, a), (_, b)) in plain_weights.iter().zip(&weights) {
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-6, "{name}: weights differ by {diff}");
    }
    // With dropout, checkpointed blocks draw their masks from per-block seeds, so the losses
    // differ from the plain run's (the config reached the step) and repeat exactly.
    let (plain, _) = train_run(false, 0.1);
    let (once, _) = train_run(true, 0.1);
    let (twice, _) = train_run(true, 0.1);
    assert_eq!(once, twice);
    assert!((plain[0] - once[0]).abs() > 1e-6, "{plain:?} vs {once:?}");
}

/// A regression test: when the embeddings were not a segment of their own, their graph had to
/// outlive the other segments' backward passes, and about one run in ten lost it (`wte` and
/// `wpe` got only part of their gradients) once a previous micro-batch had consumed their
/// parameters' nodes.
#[test]
fn accumulated_micro_batches_keep_the_embedding_gradients() {
    let data = arcane::data::Batch {
        tokens: (0..2 * 33).map(|i| (i * 37 % 250) as u32).collect(),
        batch_size: 2,
        seq_len: 32,
    };
    let grads = |checkpointing: bool| {
        let _turn = rng_turn();
        let device = Default::default();
        AD::seed(&device, 3);
        let config = ModelConfig {
            max_seq_len: 32,
            ..ModelConfig::tiny()
        };
        let model = config.init::<AD>(&device).unwrap();
        let mut sum = burn::optim::GradientsAccumulator::<Gpt<AD>>::new();
        for _ in 0..2 {
            let mut batch = LmBatch::<AD>::new(&data, 0.5, &device);
            batch.activation_checkpointing = checkpointing;
            sum.accumulate(&model, TrainStep::step(&model, batch).grads);
        }
        (0.0, collect(&model, &sum.grads()))
    };
    let plain = grads(false);
    for _ in 0..20 {
        assert_same(&plain, &grads(true), TOL);
    }
}
