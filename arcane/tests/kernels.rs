//! The fused CPU kernels against the generic path (Burn's own ops) on the same models: the
//! loss, every parameter's gradient, and AdamW steps. On a GPU test backend both sides are
//! the generic path.

mod common;

use arcane::kernels::generic_only;
use arcane::training::{lm_loss, GroupedAdamW, OptimizerConfig};
use arcane::Gpt;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use common::*;

type B = TestAutodiff;

/// Every float parameter (or its gradient) by path.
struct Collect<'a> {
    grads: Option<&'a <B as burn::tensor::backend::AutodiffBackend>::Gradients>,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor<B> for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = match self.grads {
            Some(g) => param
                .val()
                .grad(g)
                .expect("a gradient for every parameter")
                .into_data(),
            None => param.val().into_data(),
        };
        let name = self.path.join(".");
        self.out.push((name, v.convert::<f32>().to_vec().unwrap()));
    }
}

fn collect(
    model: &Gpt<B>,
    grads: Option<&<B as burn::tensor::backend::AutodiffBackend>::Gradients>,
) -> Vec<(String, Vec<f32>)> {
    let mut c = Collect {
        grads,
        path: vec![],
        out: vec![],
    };
    model.visit(&mut c);
    c.out
}

/// Inputs and next tokens from a deterministic sequence below `vocab`.
fn batch(vocab: u32, t: usize) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let seq: Vec<u32> = (0..2 * (t + 1) as u32)
        .map(|i| (i * 53 + 7) % vocab)
        .collect();
    let device = Default::default();
    let (a, b) = seq.split_at(t + 1);
    let inputs = Tensor::cat(
        vec![tokens::<B>(&a[..t], &device), tokens::<B>(&b[..t], &device)],
        0,
    );
    let targets = Tensor::cat(
        vec![tokens::<B>(&a[1..], &device), tokens::<B>(&b[1..], &device)],
        0,
    );
    (inputs, targets)
}

/// Loss and gradients of `model` on the batch.
fn loss_and_grads(model: &Gpt<B>, vocab: u32) -> (f32, Vec<(String, Vec<f32>)>) {
    let (inputs, targets) = batch(vocab, 12);
    let loss = lm_loss(model, inputs, targets);
    let grads = loss.backward();
    (values(loss)[0], collect(model, Some(&grads)))
}

fn assert_close(what: &str, a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], tol: f32) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let diff = max_abs_diff(x, y);
        assert!(
            diff <= tol * scale,
            "{what} {name}: differs by {diff} (scale {scale})"
        );
        assert!(x.iter().all(|v| v.is_finite()), "{what} {name}: not finite");
    }
}

/// Fused loss and gradients against the generic path on GPT-2 (LayerNorm with bias, tanh
/// GELU, tied head, 50257 words), Llama (RMSNorm, SwiGLU, untied head, grouped-query
/// attention), Qwen2 (q/k/v biases), Qwen3 (q/k norms, head width 16 on a width of 32), Gemma
/// (`(1 + w)` norms, GeGLU, scaled embeddings), Llama 3 RoPE scaling and Mistral's and Phi-3's
/// sliding windows (5 and 8 of 12 positions); `what` names the instruction set in failures.
fn check_fused_against_generic(what: &str) {
    let further = ["qwen2", "qwen3", "gemma", "llama3", "mistral", "phi3"].map(|d| (d, 512));
    for (dir, vocab) in [("gpt2", 50257), ("llama", 512)].into_iter().chain(further) {
        let device = Default::default();
        let model: Gpt<B> = arcane::load_model(&fixture(dir), &device).unwrap();
        let (loss, grads) = loss_and_grads(&model, vocab);
        let (loss_ref, grads_ref) = generic_only(|| loss_and_grads(&model, vocab));
        assert!(
            (loss - loss_ref).abs() < 1e-5 * loss_ref.abs(),
            "{what} {dir}: loss {loss} vs {loss_ref}"
        );
        assert_close(&format!("{what} {dir}"), &grads, &grads_ref, 1e-4);
    }
}

/// Cached decoding (matrix-vector products, cache attention) against the full forward pass.
fn check_decoding(what: &str) {
    let device = Default::default();
    let model: Gpt<TestBackend> = arcane::load_model(&fixture("llama"), &device).unwrap();
    let seq: Vec<u32> = (0..12).map(|t| (t * 37 + 5) % 512).collect();
    let full = values(model.forward(tokens(&seq, &device)));
    let mut cache = model.new_cache();
    let mut stepped = values(model.forward_cached(tokens(&seq[..4], &device), &mut cache));
    for &id in &seq[4..] {
        stepped.extend(values(
            model.forward_cached(tokens(&[id], &device), &mut cache),
        ));
    }
    let diff = max_abs_diff(&full, &stepped);
    assert!(
        diff < tol(1e-5),
        "{what}: cached decoding differs by {diff}"
    );
}

#[test]
fn fused_loss_and_gradients_equal_the_generic_ones() {
    check_fused_against_generic("best instruction set");
}

/// The code a CPU without AVX-512 (or without AVX2) runs, on this one: the kernels capped to
/// AVX2 and to portable code compute what the generic path does. (Other tests of this binary
/// may run under the cap meanwhile; every path is exact, so they still pass.)
#[test]
#[cfg(target_arch = "x86_64")]
fn every_instruction_set_computes_the_same() {
    use arcane::kernels::cpu::simd::{isa, limit_isa, Isa};
    for cap in [Isa::Avx2, Isa::Portable] {
        limit_isa(cap);
        if std::arch::is_x86_feature_detected!("avx2") || cap == Isa::Portable {
            assert_eq!(isa(), cap);
        }
        check_fused_against_generic(&format!("{cap:?}"));
        check_decoding(&format!("{cap:?}"));
    }
    limit_isa(Isa::Avx512Bf16);
}

#[test]
fn fused_adamw_steps_equal_burns_arithmetic() {
    let device = Default::default();
    let model: Gpt<B> = arcane::load_model(&fixture("llama"), &device).unwrap();
    let config = OptimizerConfig::default();
    // Both runs see the same gradients (from the generic path): Adam divides by sqrt(v), so
    // gradient differences in the last bits would be amplified where gradients are near zero.
    let run = |model: Gpt<B>, fused: bool| {
        let mut optim = GroupedAdamW::new(&config, &model);
        let mut model = model;
        for step in 0..3 {
            let (inputs, targets) = batch(512, 8 + step);
            let grads = generic_only(|| lm_loss(&model, inputs, targets).backward());
            let grads = GradientsParams::from_grads(grads, &model);
            model = match fused {
                true => optim.step(1e-2, model, grads),
                false => generic_only(|| optim.step(1e-2, model, grads)),
            };
        }
        collect(&model, None)
    };
    let fused = run(model.clone(), true);
    let reference = run(model, false);
    assert_close("parameter", &fused, &reference, 1e-5);
}
