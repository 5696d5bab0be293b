//! The model's own tokenizer through the binary: a Llama folder's tokenizer.json gives the
//! Python library's ids for a prompt, and survives conversion to the Arcane format.

mod common;

use common::{cli, fixture, stdout_json as json};
use serde_json::Value;

#[test]
fn llama_models_use_their_own_tokenizer() {
    let tok: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tokenizer_reference.json")).unwrap(),
    )
    .unwrap();
    let llama = fixture("llama");
    let prompt = "Call me Ishmael.";
    let out = json(&[
        "generate",
        "--model",
        llama.to_str().unwrap(),
        "--prompt",
        prompt,
        "--max-new-tokens",
        "6",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(
        out["prompt_ids"], tok["strings"][prompt]["ids"],
        "<s> and the file's ids"
    );
    assert!(out["ids"]
        .as_array()
        .unwrap()
        .iter()
        .all(|id| id.as_u64().unwrap() < 512));
    // Converted to the Arcane format, the model keeps its tokenizer.
    let tmp = tempfile::tempdir().unwrap();
    let converted = tmp.path().join("arcane");
    let out_dir = converted.to_str().unwrap();
    ok_args(&[
        "convert",
        "--model",
        llama.to_str().unwrap(),
        "--out",
        out_dir,
        "--format",
        "arcane",
    ]);
    let again = json(&[
        "generate",
        "--model",
        out_dir,
        "--prompt",
        prompt,
        "--max-new-tokens",
        "6",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(again["prompt_ids"], out["prompt_ids"]);
    assert_eq!(again["ids"], out["ids"]);
    // Text scored with its own tokenizer.
    let loss = json(&[
        "eval",
        "loss",
        "--json",
        "--model",
        out_dir,
        "--text",
        fixture("eval.txt").to_str().unwrap(),
    ]);
    assert!(loss["loss"].as_f64().unwrap().is_finite());
}

/// Runs a command that must succeed (its output is not JSON).
fn ok_args(args: &[&str]) {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
