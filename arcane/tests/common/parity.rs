//! Comparisons with transformers' reference outputs, shared by `parity.rs` (GPT-2, Llama) and
//! `parity_archs.rs` (the further architectures).

use arcane::generation::{generate, GenerateConfig, SamplingConfig, StopReason};
use arcane::shapes::FixedShapes;
use arcane::Gpt;
use serde_json::Value;

use super::*;

/// Logit tolerance against transformers (the CPU; looser on GPUs, see `tol`).
pub fn tol_logits() -> f32 {
    tol(1e-4)
}

/// Compares our logits with one reference record (all columns, or every `column_stride`-th),
/// their row-wise log-sum-exp (over every column) and argmax.
pub fn check_logits(model: &Gpt<TestBackend>, record: &Value) {
    let seq = ids(&record["tokens"]);
    let v = model.config().vocab_size;
    let logits = values(model.forward(tokens(&seq, &model.device()))); // [T * V]
    let stride = record["column_stride"].as_u64().unwrap_or(1) as usize;
    let ours: Vec<f32> = logits
        .chunks(v)
        .flat_map(|row| row.iter().step_by(stride).copied().collect::<Vec<_>>())
        .collect();
    let diff = max_abs_diff(&ours, &floats(&record["logits"]));
    assert!(
        diff < tol_logits(),
        "logits differ from transformers by {diff}"
    );
    for (t, row) in logits.chunks(v).enumerate() {
        // log-sum-exp over the whole row (in f64: 50257 terms), which every column influences.
        let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let expected = floats(&record["logsumexp"])[t] as f64;
        assert!(
            (lse - expected).abs() < tol_logits() as f64,
            "logsumexp at {t}: {lse} vs {expected}"
        );
        assert_eq!(
            arcane::generation::Sampler::new(SamplingConfig::greedy())
                .unwrap()
                .sample(row),
            ids(&record["argmax"])[t]
        );
    }
}

/// Decoding through the KV cache (a 3-token prefill, then one token at a time: both paths of
/// the cache) gives the full forward's logits.
pub fn check_cached_decoding(model: &Gpt<TestBackend>, seq: &[u32]) {
    let device = model.device();
    let full = values(model.forward(tokens(seq, &device)));
    let mut cache = model.new_cache();
    let mut stepped = Vec::new();
    stepped.extend(values(
        model.forward_cached(tokens(&seq[..3], &device), &mut cache),
    ));
    for &id in &seq[3..] {
        stepped.extend(values(
            model.forward_cached(tokens(&[id], &device), &mut cache),
        ));
    }
    assert_eq!(cache.len(), seq.len());
    let diff = max_abs_diff(&full, &stepped);
    assert!(
        diff < tol(1e-5),
        "cached decoding differs from the full forward by {diff}"
    );
}

/// Greedy ids equal transformers' (`greedy` holds `prompt` and `ids`), streamed as returned.
pub fn check_greedy(model: &Gpt<TestBackend>, greedy: &Value, eos: u32, shapes: FixedShapes) {
    let expected = ids(&greedy["ids"]);
    let config = GenerateConfig {
        max_new_tokens: expected.len(),
        sampling: SamplingConfig::greedy(),
        stop_tokens: vec![eos],
        vocab_limit: None,
        shapes,
    };
    let mut streamed = Vec::new();
    let out = generate(model, &ids(&greedy["prompt"]), &config, |id| {
        streamed.push(id)
    })
    .unwrap();
    assert_eq!(
        out.ids, expected,
        "greedy continuation differs from transformers"
    );
    assert_eq!(streamed, expected);
    assert_eq!(out.stop, StopReason::MaxNewTokens);
}
