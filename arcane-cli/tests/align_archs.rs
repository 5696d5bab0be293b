//! Alignment and generation on the Llama and Qwen2 fixtures, each read with its own
//! `tokenizer.json`: DPO starts at ln 2 (policy == reference) and falls, a reward model scores
//! held-out pairs as measured in training and is refused for a policy with another tokenizer,
//! and `generate` stops at any id of an `eos_token_id` list.

mod common;

use std::path::Path;

use common::{bin, fails, fixture, ok, records};
use serde_json::Value;

/// A small hand-made preference file: the chosen completions are the same few words.
fn pairs(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("pairs.jsonl");
    let lines = [
        ("Hello world", " the whale", " a ship"),
        ("Call me", " Ishmael.", " later."),
        ("The sea", " the whale", " was calm"),
        ("", " the whale", " no thanks"),
    ];
    let text: String = lines
        .iter()
        .map(|(p, c, r)| {
            serde_json::json!({"prompt": p, "chosen": c, "rejected": r}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).expect("one JSON object on stdout")
}

fn dpo_starts_at_ln2_and_falls(model: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (pairs(tmp.path()), tmp.path().join("dpo"));
    ok(bin()
        .args(["dpo", "--max-steps", "8", "--batch", "4", "--lr", "1e-2"])
        .arg("--model")
        .arg(fixture(model))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out));
    let losses: Vec<f64> = records(&out, "align")
        .iter()
        .filter_map(|r| r["values"]["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 8, "{losses:?}");
    // -log σ(β·0): the policy is the reference at the first step.
    assert!(
        (losses[0] - std::f64::consts::LN_2).abs() < 1e-5,
        "{losses:?}"
    );
    assert!(losses[7] < losses[0] - 1e-3, "{losses:?}");
}

#[test]
fn dpo_on_llama_and_qwen2() {
    dpo_starts_at_ln2_and_falls("llama");
    dpo_starts_at_ln2_and_falls("qwen2");
}

/// Trains a reward model on `model`'s fixture into `out`; `reward eval` of the saved model
/// equals the held-out figures of training. Returns the manifest's tokenizer.
fn reward_model(model: &str, data: &Path, out: &Path) -> String {
    let trained = json(&ok(bin()
        .args(["reward", "train", "--max-steps", "4", "--batch", "4"])
        .args(["--lr", "1e-3", "--json", "--model"])
        .arg(fixture(model))
        .arg("--data")
        .arg(data)
        .arg("--eval-data")
        .arg(data)
        .arg("--out")
        .arg(out)));
    let eval = json(&ok(bin()
        .args(["reward", "eval", "--json", "--model"])
        .arg(out)
        .arg("--data")
        .arg(data)));
    for key in ["accuracy", "n", "margin_mean", "loss"] {
        assert_eq!(eval[key], trained[key], "{model}: {key}");
    }
    assert_eq!(eval["n"], 4);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("reward.json")).unwrap()).unwrap();
    manifest["tokenizer"].as_str().unwrap().to_string()
}

#[test]
fn reward_models_on_llama_and_qwen2_and_refused_for_gpt2() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = pairs(t);
    let (llama_rm, qwen_rm) = (t.join("rm-llama"), t.join("rm-qwen2"));
    let llama = reward_model("llama", &data, &llama_rm);
    assert!(llama.starts_with("tokenizer.json sha256:"), "{llama}");
    // The two fixtures ship one tokenizer.json: the same identity.
    assert_eq!(reward_model("qwen2", &data, &qwen_rm), llama);

    let prompts = t.join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"Call me\"}\n{\"prompt\": \"The sea\"}\n",
    )
    .unwrap();
    let eval_reward = |policy: &str, rm: &Path| {
        let mut cmd = bin();
        cmd.args(["eval", "reward", "--samples", "4", "--response-tokens", "4"])
            .args(["--json", "--model"])
            .arg(fixture(policy))
            .arg("--prompts")
            .arg(&prompts)
            .arg("--reward")
            .arg(rm);
        cmd
    };
    // Accepted for a policy with the same tokenizer: the Llama RM scores Qwen2's samples.
    let scored = json(&ok(&mut eval_reward("qwen2", &llama_rm)));
    assert_eq!(scored["n"], 4);
    assert_eq!(scored["kl_mean"], 0.0);
    // Refused for GPT-2, naming both tokenizers.
    let err = fails(&mut eval_reward("gpt2", &llama_rm));
    assert!(err.contains(&llama) && err.contains("gpt2"), "{err}");
}

#[test]
fn generate_stops_at_the_second_eos_id_of_a_list() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama3");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("llama3")).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let generate = || {
        json(&ok(bin()
            .args(["generate", "--prompt", "The whale", "--temperature", "0"])
            .args(["--max-new-tokens", "12", "--json", "--model"])
            .arg(&dir)))
    };
    let free: Vec<u32> = serde_json::from_value(generate()["ids"].clone()).unwrap();
    assert_eq!(
        free.len(),
        12,
        "the greedy text runs to the limit: {free:?}"
    );
    // eos_token_id [an id never generated, the third generated id]: the text ends at the
    // first occurrence of the latter, which it includes.
    let unused = (3..512).find(|id| !free.contains(id)).unwrap();
    let target = free[2];
    let end = free.iter().position(|&id| id == target).unwrap();
    let config = serde_json::json!({"bos_token_id": 1, "eos_token_id": [unused, target]});
    std::fs::write(dir.join("generation_config.json"), config.to_string()).unwrap();
    let stopped: Vec<u32> = serde_json::from_value(generate()["ids"].clone()).unwrap();
    assert_eq!(stopped, free[..=end]);
}
