//! Parity with Hugging Face transformers: logits, cached decoding and greedy continuations of
//! tiny random GPT-2 and Llama checkpoints (see `scripts/make_reference.py`).

mod common;

use arcane::generation::{generate, GenerateConfig, SamplingConfig, StopReason};
use arcane::shapes::FixedShapes;
use arcane::{load_model, Gpt};
use common::parity::{check_cached_decoding, check_logits};
use common::*;

fn load(name: &str) -> Gpt<TestBackend> {
    load_model::<TestBackend>(&fixture(name), &Default::default()).expect("fixture loads")
}

#[test]
fn gpt2_logits_match_transformers() {
    let model = load("gpt2");
    for record in reference()["gpt2"]["logits"].as_array().unwrap() {
        check_logits(&model, record);
    }
}

#[test]
fn llama_logits_match_transformers() {
    let model = load("llama");
    assert_eq!(
        model.config().kv_heads(),
        2,
        "the fixture exercises grouped-query attention"
    );
    for record in reference()["llama"]["logits"].as_array().unwrap() {
        check_logits(&model, record);
    }
}

#[test]
fn cached_decoding_matches_full_forward() {
    let r = reference();
    check_cached_decoding(&load("gpt2"), &ids(&r["gpt2"]["logits"][1]["tokens"]));
    check_cached_decoding(&load("llama"), &ids(&r["llama"]["logits"][0]["tokens"]));
}

/// Greedy ids equal transformers', with exact prompt shapes and with the prompt right-padded
/// to a fixed shape as on GPU backends.
fn check_greedy(name: &str, eos: u32, shapes: FixedShapes) {
    common::parity::check_greedy(&load(name), &reference()[name]["greedy"], eos, shapes);
}

#[test]
fn greedy_continuation_matches_transformers() {
    for shapes in [FixedShapes::EXACT, FixedShapes::BUCKETED] {
        check_greedy("gpt2", 50256, shapes);
        check_greedy("llama", 2, shapes);
    }
}

#[test]
fn generation_stops_at_the_context_limit() {
    let model = load("llama"); // context 64
    let prompt: Vec<u32> = (0..60).collect();
    let config = GenerateConfig {
        max_new_tokens: 100,
        sampling: SamplingConfig::greedy(),
        stop_tokens: vec![],
        vocab_limit: None,
        shapes: FixedShapes::BUCKETED,
    };
    let out = generate(&model, &prompt, &config, |_| {}).unwrap();
    assert_eq!(out.stop, StopReason::ContextFull);
    assert_eq!(
        out.ids.len(),
        5,
        "60 prompt tokens + 4 fed back fill 64 positions, the 5th is sampled last"
    );
}

#[test]
fn bad_prompts_are_errors_not_panics() {
    let model = load("llama");
    let config = GenerateConfig::default();
    assert!(generate(&model, &[], &config, |_| {}).is_err());
    let err = generate(&model, &[5, 512], &config, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let long: Vec<u32> = vec![1; 65];
    let err = generate(&model, &long, &config, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("shorten the prompt"), "{err}");
}

/// Exact shapes, GPU buckets, and a bucket that does not divide anything (padding everywhere):
/// padded rows, lengths and head positions must never change a result.
const PADDINGS: [FixedShapes; 3] = [
    FixedShapes::EXACT,
    FixedShapes::BUCKETED,
    FixedShapes {
        seq: 5,
        full_batches: true,
    },
];

#[test]
fn windowed_loss_matches_transformers() {
    let model = load("gpt2");
    let r = reference();
    let text = std::fs::read_to_string(fixture("eval.txt")).unwrap();
    let ids = arcane::Tokenizer::gpt2().encode(&text);
    assert_eq!(
        ids,
        common::ids(&r["tokenizer"][text.as_str()]),
        "tiktoken-rs agrees with HF's GPT-2 tokenizer"
    );
    for (key, shapes) in ["eval", "eval_window_16"]
        .into_iter()
        .flat_map(|k| PADDINGS.map(|s| (k, s)))
    {
        let expected = &r["gpt2"][key];
        let window = expected["window"].as_u64().unwrap() as usize;
        let report = arcane::eval::token_loss(&model, &ids, window, 3, shapes, |_, _| {}).unwrap();
        assert_eq!(report.tokens as u64, expected["tokens"].as_u64().unwrap());
        let diff = (report.loss - expected["loss"].as_f64().unwrap()).abs();
        assert!(
            diff < tol(1e-4) as f64,
            "{key}: loss {} vs transformers {}",
            report.loss,
            expected["loss"]
        );
    }
}

#[test]
fn tokenizer_matches_hf_gpt2_tokenizer() {
    let tok = arcane::Tokenizer::gpt2();
    for (text, expected) in reference()["tokenizer"].as_object().unwrap() {
        assert_eq!(tok.encode(text), ids(expected), "{text:?}");
    }
}

#[test]
fn hellaswag_scores_match_transformers() {
    let model = load("gpt2");
    let (examples, bad) = arcane::eval::load_hellaswag(&fixture("hellaswag.jsonl"), false).unwrap();
    assert!(bad.is_empty());
    let expected = reference()["gpt2"]["hellaswag"].as_array().unwrap().clone();
    assert_eq!(examples.len(), expected.len());
    // Several examples per batch (padded) must score as one at a time.
    for (batch, shapes) in [1, 3, 8].into_iter().flat_map(|b| PADDINGS.map(|s| (b, s))) {
        let predictions =
            arcane::eval::score_hellaswag(&model, &examples, batch, shapes, |_| {}).unwrap();
        for (p, e) in predictions.iter().zip(&expected) {
            assert_eq!(p.ind, e["ind"].as_u64().unwrap());
            for i in 0..4 {
                let (sum, mean) = (
                    e["sum_losses"][i].as_f64().unwrap(),
                    e["mean_losses"][i].as_f64().unwrap(),
                );
                // 1e-4 per scored token: the sum adds up one f32 rounding error per token.
                let tokens = (sum / mean).round();
                assert!(
                    (p.sum_losses[i] - sum).abs() < tol(1e-4) as f64 * tokens,
                    "ind {}: sum {} vs {sum}",
                    p.ind,
                    p.sum_losses[i]
                );
                assert!(
                    (p.mean_losses[i] - mean).abs() < tol(1e-4) as f64,
                    "ind {}: mean {} vs {mean}",
                    p.ind,
                    p.mean_losses[i]
                );
            }
            assert_eq!(p.pred as u64, e["pred"].as_u64().unwrap());
            assert_eq!(p.pred_norm as u64, e["pred_norm"].as_u64().unwrap());
        }
    }
}
