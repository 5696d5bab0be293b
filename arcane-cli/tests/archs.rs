//! The commands on every further Hugging Face architecture (Qwen2, Qwen3, Mistral, Gemma,
//! Phi-3, Llama 3 RoPE scaling; fixtures of `scripts/make_reference.py --archs`): evaluation,
//! conversion both ways, LoRA fine-tuning, merging into a Hugging Face folder, generation.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const ARCHS: [(&str, &str); 6] = [
    ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"),
    ("mistral", "MistralForCausalLM"),
    ("gemma", "GemmaForCausalLM"),
    ("phi3", "Phi3ForCausalLM"),
    ("llama3", "LlamaForCausalLM"),
];

/// `eval loss --json` on `eval.txt`.
fn loss(model: &Path, adapter: Option<&Path>) -> f64 {
    let mut cmd = bin();
    cmd.args(["eval", "loss", "--json", "--model"])
        .arg(model)
        .arg("--text")
        .arg(fixture("eval.txt"));
    if let Some(adapter) = adapter {
        cmd.arg("--adapter").arg(adapter);
    }
    let out = ok(&mut cmd);
    serde_json::from_str::<Value>(&out).unwrap()["loss"]
        .as_f64()
        .unwrap()
}

fn class_of(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&text).unwrap();
    config["architectures"][0].as_str().unwrap().to_string()
}

fn greedy(model: &Path) -> String {
    ok(bin()
        .args(["generate", "--temperature", "0", "--max-new-tokens", "8"])
        .args(["--prompt", "Call me Ishmael.", "--model"])
        .arg(model))
}

#[test]
fn every_architecture_evaluates_converts_fine_tunes_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, class) in ARCHS {
        let model = fixture(name);
        let t = tmp.path().join(name);
        let base = loss(&model, None);
        assert!(base.is_finite() && base > 0.0, "{name}: {base}");
        // Converted either way, the model scores exactly the same and generates the same.
        for format in ["hf", "arcane"] {
            let out = t.join(format);
            ok(bin()
                .args(["convert", "--format", format, "--model"])
                .arg(&model)
                .arg("--out")
                .arg(&out));
            assert_eq!(loss(&out, None), base, "{name} {format}");
            assert_eq!(greedy(&out), greedy(&model), "{name} {format}");
        }
        assert_eq!(class_of(&t.join("hf")), class, "{name}");
        // A LoRA fine-tune on the evaluation text lowers its loss; merged into a Hugging Face
        // folder of the same class, it scores as the adapter does.
        let run = t.join("run");
        ok(bin()
            .args(["finetune", "--no-dashboard", "--lora-rank", "4"])
            .args([
                "--max-steps",
                "8",
                "--eval-every",
                "4",
                "--micro-batch",
                "4",
            ])
            .args(["--lr", "1e-2", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(fixture("eval.txt"))
            .arg("--out")
            .arg(&run));
        let tuned = loss(&model, Some(&run));
        assert!(tuned < base - 0.05, "{name}: {base} -> {tuned}");
        let merged = t.join("merged");
        ok(bin()
            .args(["lora", "merge", "--format", "hf", "--model"])
            .arg(&model)
            .arg("--adapter")
            .arg(&run)
            .arg("--out")
            .arg(&merged));
        assert_eq!(class_of(&merged), class, "{name}");
        let merged_loss = loss(&merged, None);
        assert!(
            (merged_loss - tuned).abs() < 1e-4,
            "{name}: merged {merged_loss} vs adapter {tuned}"
        );
    }
}
