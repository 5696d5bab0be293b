//! Weights stored in bf16 for inference (`Gpt::with_bf16_weights`, `--precision bf16` of
//! `generate`, `eval` and `bench decode`): which parameters are converted and how they are
//! rounded, the CPU kernels against the generic path on the same bf16 weights (every
//! instruction set), logits within bf16's tolerance of f32, and greedy continuations equal to
//! f32's on the fixtures.

mod common;

use arcane::generation::{generate, GenerateConfig, SamplingConfig};
use arcane::kernels::generic_only;
use arcane::Gpt;
use burn::prelude::*;
use burn::tensor::DType;
use common::*;

type B = TestBackend;

fn load(name: &str) -> Gpt<B> {
    arcane::load_model(&fixture(name), &Default::default()).unwrap()
}

fn logits(model: &Gpt<B>, seq: &[u32]) -> Vec<f32> {
    values(model.forward(tokens(seq, &model.device())))
}

/// The logits of every position, decoded one token at a time through the KV cache (the
/// matrix-vector kernels and the tied head's row kernel on the CPU).
fn decoded_logits(model: &Gpt<B>, seq: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    seq.iter()
        .flat_map(|&id| values(model.forward_cached(tokens(&[id], &model.device()), &mut cache)))
        .collect()
}

/// A deterministic sequence below `vocab`, longer than the matrix-vector kernel's 8 rows.
fn sequence(vocab: u32) -> Vec<u32> {
    (0..20u32).map(|i| (i * 37 + 11) % vocab).collect()
}

fn values_of(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn projections_and_the_tied_table_are_rounded_to_nearest_even_bf16() {
    for (name, tied) in [("gpt2", true), ("llama", false)] {
        let f32_model = load(name);
        let model = load(name).with_bf16_weights();
        assert!(model.has_bf16_weights() && !f32_model.has_bf16_weights());
        let (b, b32) = (&model.blocks[0], &f32_model.blocks[0]);
        for (w, w32) in [
            (&b.attn.q.weight, &b32.attn.q.weight),
            (&b.attn.o.weight, &b32.attn.o.weight),
            (&b.mlp.fc.weight, &b32.mlp.fc.weight),
            (&b.mlp.proj.weight, &b32.mlp.proj.weight),
        ] {
            assert_eq!(w.val().dtype(), DType::BF16, "{name}");
            let want: Vec<f32> = values_of(w32.val())
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_f32())
                .collect();
            assert_eq!(
                values_of(w.val()),
                want,
                "{name}: not f32 rounded to nearest even"
            );
        }
        // Norms stay f32; so do biases (GPT-2 has them) and learned positions.
        assert_eq!(model.ln_f.weight.val().dtype(), DType::F32);
        if let Some(bias) = &b.attn.q.bias {
            assert_eq!(bias.val().dtype(), DType::F32);
        }
        if let Some(wpe) = &model.wpe {
            assert_eq!(wpe.weight.val().dtype(), DType::F32);
        }
        let table = model.wte.weight.val().dtype();
        assert_eq!(table, if tied { DType::BF16 } else { DType::F32 }, "{name}");
        if let Some(head) = &model.lm_head {
            assert_eq!(head.weight.val().dtype(), DType::BF16);
        }
    }
}

/// The CPU's bf16 kernels (matrix-vector products, the tied head's rows, widened weights for
/// the prefill's gemm) against Burn's generic path on the same bf16 weights (cast to f32,
/// exact): the same products, in another order, within 1e-4. With AVX512_BF16 the tied head
/// rounds the final hidden state `h` to bf16 for `vdpbf16ps`, which moves logit `v` by at most
/// 2⁻⁸·Σ_c |h_c·w_vc| (half an ulp of bf16's 8 significant bits on every product); that bound is checked.
fn check_fused_against_generic(what: &str) {
    use arcane::kernels::cpu::simd::{isa, Isa};
    let bf16_head = isa() == Isa::Avx512Bf16;
    for name in ["gpt2", "llama", "qwen2"] {
        let model = load(name).with_bf16_weights();
        let (v, c) = (model.config().vocab_size, model.config().d_model);
        let seq = sequence(v.min(512) as u32);
        let reference = generic_only(|| logits(&model, &seq));
        let prefill = logits(&model, &seq);
        let d = max_abs_diff(&prefill, &reference);
        assert!(
            d < 1e-4,
            "{what} {name}: prefill differs from generic by {d}"
        );
        let decoded = decoded_logits(&model, &seq);
        if !(bf16_head && model.lm_head.is_none()) {
            let d = max_abs_diff(&decoded, &reference);
            assert!(
                d < 1e-4,
                "{what} {name}: decoding differs from generic by {d}"
            );
            continue;
        }
        let hidden = values(model.forward_hidden(tokens(&seq, &model.device()), None));
        let table = values_of(model.wte.weight.val());
        for (t, h) in hidden.chunks(c).enumerate() {
            for (k, w) in table.chunks(c).enumerate() {
                let magnitude: f32 = h.iter().zip(w).map(|(a, b)| (a * b).abs()).sum();
                let bound = magnitude * 2f32.powi(-8) + 1e-4;
                let d = (decoded[t * v + k] - reference[t * v + k]).abs();
                assert!(
                    d <= bound,
                    "{what} {name}: logit [{t}, {k}] moved by {d} > {bound}"
                );
            }
        }
    }
}

/// Every bf16 kernel this CPU can run, one after the other (the cap is global to the test
/// binary: the other tests here may run under it meanwhile, and pass on every path): with
/// AVX512_BF16, and what a CPU without it, without AVX-512 or without AVX2 runs.
#[test]
fn bf16_kernels_equal_the_generic_path_on_every_instruction_set() {
    use arcane::kernels::cpu::simd::{isa, limit_isa, Isa};
    for cap in [Isa::Avx512Bf16, Isa::Avx512, Isa::Avx2, Isa::Portable] {
        limit_isa(cap);
        if isa() == cap {
            check_fused_against_generic(&format!("{cap:?}"));
        }
    }
    limit_isa(Isa::Avx512Bf16);
}

/// Logits with bf16 weights against f32: each weight moves by at most 2⁻⁸ of itself, so a
/// logit moves by a small fraction of its scale; measured on the fixtures, under 1.5% of the
/// largest |logit|. Every row's argmax agrees wherever f32's top two logits are further apart
/// than twice the largest difference.
#[test]
fn bf16_logits_are_within_bf16_tolerance_of_f32() {
    for name in ["gpt2", "llama", "qwen2", "mistral"] {
        let f32_model = load(name);
        let model = load(name).with_bf16_weights();
        let v = model.config().vocab_size;
        let seq = sequence(v.min(512) as u32);
        let (want, got) = (logits(&f32_model, &seq), logits(&model, &seq));
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = max_abs_diff(&got, &want);
        println!("{name}: max |Δlogit| {diff:.2e}, max |logit| {scale:.2}");
        assert!(diff <= 0.015 * scale, "{name}: {diff} vs scale {scale}");
        for (row_want, row_got) in want.chunks(v).zip(got.chunks(v)) {
            let mut sorted = row_want.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 2.0 * diff {
                assert_eq!(argmax(row_got), argmax(row_want), "{name}");
            }
        }
    }
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// Greedy continuations of the fixtures (transformers' reference prompts, 12 tokens) with bf16
/// weights equal f32's, token for token.
#[test]
fn greedy_continuations_with_bf16_weights_equal_f32() {
    let reference = reference();
    for (name, eos) in [("gpt2", 50256), ("llama", 2)] {
        let greedy = &reference[name]["greedy"];
        let prompt = ids(&greedy["prompt"]);
        let config = GenerateConfig {
            max_new_tokens: ids(&greedy["ids"]).len(),
            sampling: SamplingConfig::greedy(),
            stop_tokens: vec![eos],
            vocab_limit: None,
            ..GenerateConfig::default()
        };
        let run = |model: &Gpt<B>| generate(model, &prompt, &config, |_| {}).unwrap().ids;
        let f32_ids = run(&load(name));
        let bf16_ids = run(&load(name).with_bf16_weights());
        assert_eq!(
            f32_ids,
            ids(&greedy["ids"]),
            "{name}: f32 against transformers"
        );
        assert_eq!(bf16_ids, f32_ids, "{name}: bf16 weights against f32");
    }
}
