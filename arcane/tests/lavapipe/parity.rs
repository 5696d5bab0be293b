//! Logits of every fixture architecture, and greedy continuations from padded prompts, on
//! wgpu against the CPU and transformers.

use arcane::shapes::FixedShapes;
use serde_json::Value;

use super::*;
use crate::common::parity::{check_greedy, check_logits};
use crate::common::{fixture, ids, reference, values};

/// The fixtures and their end-of-sequence id: GPT-2 and Llama (`reference.json`), then the
/// further architectures (`reference_archs.json`).
pub const FIXTURES: [(&str, u32); 8] = [
    ("gpt2", 50256),
    ("llama", 2),
    ("qwen2", 2),
    ("qwen3", 2),
    ("mistral", 2),
    ("gemma", 2),
    ("phi3", 2),
    ("llama3", 2),
];

/// Logits of f32 on both sides, which differ only in summation order (no TF32 on lavapipe):
/// 1e-4 absolute, the CPU suite's tolerance against transformers.
pub const LOGITS_TOL: f32 = 1e-4;

/// A fixture's transformers reference: `logits` records and `greedy`.
pub fn references(name: &str) -> Value {
    match name {
        "gpt2" | "llama" => reference()[name].clone(),
        _ => {
            let text = std::fs::read_to_string(fixture("reference_archs.json")).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()[name].clone()
        }
    }
}

#[test]
fn logits_match_the_cpu_and_transformers_on_every_fixture() {
    for (name, _) in FIXTURES {
        let (cpu, gpu_model) = (
            load::<Cpu>(name, &Default::default()),
            load::<Gpu>(name, &gpu()),
        );
        // Two rows of 24 tokens: a batch, and longer than every sliding window (5, 8, 16).
        let v = cpu.config().vocab_size;
        let rows = vec![sequence(24, v, 0), sequence(24, v, 1)];
        let ours = values(gpu_model.forward(token_rows(&rows, &gpu())));
        let theirs = values(cpu.forward(token_rows(&rows, &Default::default())));
        assert_close(
            &format!("{name} logits [2, 24]"),
            &ours,
            &theirs,
            LOGITS_TOL,
        );
        for record in references(name)["logits"].as_array().unwrap() {
            let seq = ids(&record["tokens"]);
            let ours = values(gpu_model.forward(token_rows(&[seq.clone()], &gpu())));
            let theirs = values(cpu.forward(token_rows(&[seq], &Default::default())));
            assert_close(
                &format!("{name} reference tokens"),
                &ours,
                &theirs,
                LOGITS_TOL,
            );
            // transformers' logits, log-sum-exp and argmax (the shared helper's GPU tolerance).
            check_logits(&gpu_model, record);
        }
    }
}

#[test]
fn a_right_padded_prompt_gives_the_unpadded_logits() {
    for (name, _) in FIXTURES {
        let (cpu, gpu_model) = (
            load::<Cpu>(name, &Default::default()),
            load::<Gpu>(name, &gpu()),
        );
        let v = cpu.config().vocab_size;
        let n = 13;
        let prompt = sequence(n, v, 2);
        // The prompt right-padded to the 64-position bucket, as `FixedShapes::BUCKETED` does:
        // causal attention keeps the padding out of the first n positions.
        let bucket = FixedShapes::BUCKETED.seq_len(n, cpu.config().max_seq_len);
        let mut padded = prompt.clone();
        padded.resize(bucket, 0);
        let ours = values(gpu_model.forward(token_rows(&[padded], &gpu())));
        let theirs = values(cpu.forward(token_rows(&[prompt], &Default::default())));
        assert_close(
            &format!("{name} first {n} of {bucket} padded positions"),
            &ours[..n * v],
            &theirs,
            LOGITS_TOL,
        );
    }
}

#[test]
fn greedy_ids_from_padded_and_exact_prompts_match_transformers() {
    for (name, eos) in FIXTURES {
        let gpu_model = load::<Gpu>(name, &gpu());
        let greedy = &references(name)["greedy"];
        for shapes in [FixedShapes::BUCKETED, FixedShapes::EXACT] {
            check_greedy(&gpu_model, greedy, eos, shapes);
        }
        eprintln!("{name}: greedy ids equal transformers', bucketed and exact prompts");
    }
}
