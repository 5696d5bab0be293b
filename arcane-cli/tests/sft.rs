//! `arcane-cli sft` through the binary: LoRA on prompt/completion rows logs TRL's metrics,
//! leaves the base untouched, resumes exactly from a checkpoint, names bad lines, and its
//! adapter merges into a plain model.

use std::path::Path;

mod common;
use common::{assert_same_tensors, bin, fails, fixture, ok, records};

/// Rows in TRL's prompt/completion format, one line left broken when `bad` is set.
fn rows(path: &Path, bad: bool) {
    let mut text = String::new();
    for (i, (p, c)) in [
        ("The film was", " wonderful."),
        ("I think it is", " great."),
        ("The plot was", " lovely."),
        ("Overall a", " fine film."),
        ("The actors were", " superb."),
        ("It felt", " warm."),
    ]
    .iter()
    .enumerate()
    {
        if bad && i == 1 {
            text.push_str("{\"prompt\": \"broken\"}\n");
        }
        text.push_str(&serde_json::json!({"prompt": p, "completion": c}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn sft(base: &Path, data: &Path, out: &Path) -> std::process::Command {
    let mut cmd = bin();
    cmd.args([
        "sft",
        "--no-dashboard",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
    ])
    .args([
        "--micro-batch",
        "2",
        "--lr",
        "1e-2",
        "--lora-rank",
        "4",
        "--model",
    ])
    .arg(base)
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out);
    cmd
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn sft_losses(run: &Path) -> Vec<f64> {
    records(run, "sft")
        .iter()
        .filter_map(|r| r["values"]["loss"].as_f64())
        .collect()
}

/// The per-step records (the held-out ones carry `eval_` names instead).
fn sft_steps(run: &Path) -> Vec<serde_json::Value> {
    records(run, "sft")
        .into_iter()
        .filter(|r| r["values"]["loss"].is_number())
        .collect()
}

#[test]
fn lora_sft_on_prompt_completion_rows_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("gpt2");
    let base_bytes = std::fs::read(base.join("model.safetensors")).unwrap();
    let data = tmp.path().join("rows.jsonl");
    rows(&data, false);
    let run = tmp.path().join("sft");
    ok(&mut sft(&base, &data, &run));

    // TRL's metric names, one record a step; the held-out split was made (every 20th row:
    // here the last of six).
    let steps = sft_steps(&run);
    assert_eq!(steps.len(), 6);
    let evals = records(&run, "sft").len() - 6;
    assert_eq!(evals, 2, "held-out records at steps 3 and 6");
    for key in [
        "loss",
        "mean_token_accuracy",
        "entropy",
        "num_tokens",
        "learning_rate",
        "grad_norm",
    ] {
        assert!(steps[5]["values"][key].is_number(), "{key} missing");
    }
    let acc = steps[5]["values"]["mean_token_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(!records(&run, "val").is_empty());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["sft"]["format"], "prompt_completion");
    assert!(config["sft"]["data"]
        .as_str()
        .unwrap()
        .ends_with("rows.jsonl"));
    assert!(config["finetune"]["base"]
        .as_str()
        .unwrap()
        .ends_with("gpt2"));
    assert!(run.join("adapter.safetensors").is_file());
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        base_bytes
    );

    // Exact resume: the run stopped after its step-3 checkpoint trains steps 4-6 again to the
    // same losses and adapter, bit for bit.
    let pieces = tmp.path().join("pieces");
    copy_dir(&run, &pieces);
    std::fs::remove_file(pieces.join("checkpoint/state-6.json")).unwrap();
    ok(bin()
        .args(["sft", "--no-dashboard", "--resume"])
        .arg(&pieces));
    assert_eq!(sft_losses(&pieces), sft_losses(&run));
    assert_same_tensors(
        &run.join("adapter.safetensors"),
        &pieces.join("adapter.safetensors"),
    );
    let err = fails(
        bin()
            .args(["sft", "--no-dashboard", "--lr", "1", "--resume"])
            .arg(&pieces),
    );
    assert!(err.contains("--lr cannot change on --resume"), "{err}");

    // The adapter merges into a plain model.
    let merged = tmp.path().join("merged");
    ok(bin()
        .args(["lora", "merge", "--model"])
        .arg(&base)
        .arg("--adapter")
        .arg(&run)
        .arg("--out")
        .arg(&merged));
    assert!(merged.join("model.safetensors").is_file());
}

#[test]
fn bad_rows_are_named_by_line_or_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    rows(&data, true);
    let base = fixture("gpt2");
    let err = fails(&mut sft(&base, &data, &tmp.path().join("a")));
    assert!(
        err.contains("line 2") && err.contains("--skip-bad"),
        "{err}"
    );
    let out = bin()
        .args([
            "sft",
            "--no-dashboard",
            "--skip-bad",
            "--max-steps",
            "1",
            "--micro-batch",
            "1",
        ])
        .arg("--model")
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

/// `--full` with `--eval-data`: the run folder is a model of its own, which the reward model
/// and DPO start from (and DPO takes as its reference policy).
#[test]
fn a_full_sft_run_is_the_starting_model_of_reward_and_dpo() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("gpt2");
    let base_bytes = std::fs::read(base.join("model.safetensors")).unwrap();
    let (data, eval) = (tmp.path().join("rows.jsonl"), tmp.path().join("eval.jsonl"));
    rows(&data, false);
    rows(&eval, false);
    let run = tmp.path().join("sft");
    ok(bin()
        .args([
            "sft",
            "--no-dashboard",
            "--full",
            "--max-steps",
            "4",
            "--micro-batch",
            "2",
        ])
        .args(["--lr", "1e-3", "--model"])
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--eval-data")
        .arg(&eval)
        .arg("--out")
        .arg(&run));
    assert!(run.join("model.safetensors").is_file() && run.join("arcane.json").is_file());
    assert!(!run.join("adapter.json").exists());
    assert_eq!(sft_steps(&run).len(), 4);
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        base_bytes
    );
    let pairs = tmp.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"prompt\": \"The film was\", \"chosen\": \" wonderful.\", \"rejected\": \" dull.\"}\n\
         {\"prompt\": \"It felt\", \"chosen\": \" warm.\", \"rejected\": \" cold.\"}\n",
    )
    .unwrap();
    ok(bin()
        .args([
            "reward",
            "train",
            "--max-steps",
            "2",
            "--batch",
            "2",
            "--model",
        ])
        .arg(&run)
        .arg("--data")
        .arg(&pairs)
        .arg("--out")
        .arg(tmp.path().join("rm")));
    ok(bin()
        .args(["dpo", "--max-steps", "2", "--model"])
        .arg(&run)
        .arg("--data")
        .arg(&pairs)
        .arg("--out")
        .arg(tmp.path().join("dpo")));
    assert!(tmp.path().join("rm").is_dir() && tmp.path().join("dpo").is_dir());
}

/// A LoRA SFT run of conversations on a GPT-2-vocabulary model without a template gives the
/// run ChatML; `chat --model BASE --adapter RUN` then renders ChatML and answers, while the
/// base alone (whose files SFT never changes) still has no template.
#[test]
fn chat_with_an_sft_adapter_uses_the_runs_chatml() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    common::tiny_padded_gpt2(&base);
    let manifest = std::fs::read(base.join("arcane.json")).unwrap();
    let data = tmp.path().join("chats.jsonl");
    let chat_row = |u: &str, a: &str| {
        serde_json::json!({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]})
            .to_string()
    };
    let lines: Vec<String> = (0..4)
        .map(|i| chat_row(&format!("Hello {i}"), "Hi there."))
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let run = tmp.path().join("sft");
    ok(&mut sft(&base, &data, &run));
    assert_eq!(std::fs::read(base.join("arcane.json")).unwrap(), manifest);

    let messages = tmp.path().join("m.json");
    std::fs::write(&messages, r#"[{"role": "user", "content": "Hello!"}]"#).unwrap();
    let chat = |adapter: bool| {
        let mut cmd = bin();
        cmd.arg("chat").arg("--model").arg(&base);
        if adapter {
            cmd.arg("--adapter").arg(&run);
        }
        cmd.arg("--messages").arg(&messages);
        cmd
    };
    let err = fails(chat(false).arg("--print-prompt"));
    assert!(err.contains("no ChatML"), "{err}");
    let out = ok(chat(true).args(["--print-prompt", "--json"]));
    let prompt: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        prompt["text"],
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(prompt["ids"][0], 50257, "{prompt}");
    let reply = ok(chat(true).args(["--temperature", "0", "--max-new-tokens", "3", "--json"]));
    let reply: serde_json::Value = serde_json::from_str(reply.trim()).unwrap();
    let ids = reply["ids"].as_array().unwrap();
    assert!(!ids.is_empty() && ids.len() <= 3, "{reply}");
}
