//! LoRA fine-tuning through the binary: it lowers the loss on new text, leaves the base file
//! untouched, keeps a small adapter, and merges into a plain model that scores the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::assert_same_tensors;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arcane-cli"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../arcane/tests/fixtures")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn loss(model: &Path, adapter: Option<&Path>, data: &Path) -> f64 {
    let mut cmd = bin();
    cmd.args(["eval", "loss", "--json", "--max-tokens", "2048", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data);
    if let Some(adapter) = adapter {
        cmd.arg("--adapter").arg(adapter);
    }
    let out = run(&mut cmd);
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["loss"]
        .as_f64()
        .unwrap()
}

#[test]
fn lora_fine_tuning_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/moby-dick.txt.gz");
    run(bin()
        .args(["prepare", "--val-tokens", "2048", "--input"])
        .arg(&corpus)
        .arg("--out")
        .arg(&data));
    let base = fixture("gpt2");
    let base_bytes = std::fs::read(base.join("model.safetensors")).unwrap();
    let before = loss(&base, None, &data);

    let adapter = tmp.path().join("ft");
    let out = run(bin()
        .args([
            "finetune",
            "--no-dashboard",
            "--lora-rank",
            "4",
            "--lora-targets",
            "q,k,v,o,mlp",
            "--max-steps",
            "30",
        ])
        .args([
            "--micro-batch",
            "8",
            "--eval-every",
            "15",
            "--lr",
            "1e-2",
            "--model",
        ])
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&adapter));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("trainable of"),
        "prints trainable vs total: {stderr}"
    );
    let after = loss(&base, Some(&adapter), &data);
    assert!(
        after < before - 0.2,
        "fine-tuning should lower the held-out loss: {before:.3} -> {after:.3}"
    );
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        base_bytes,
        "the base file is untouched"
    );
    let adapter_size = std::fs::metadata(adapter.join("adapter.safetensors"))
        .unwrap()
        .len();
    assert!(
        adapter_size * 10 < base_bytes.len() as u64,
        "adapter {adapter_size} B vs base {} B",
        base_bytes.len()
    );

    // Merged into a plain model (Arcane and Hugging Face layouts), it scores the same.
    for format in ["arcane", "hf"] {
        let merged = tmp.path().join(format);
        run(bin()
            .args(["lora", "merge", "--format", format, "--model"])
            .arg(&base)
            .arg("--adapter")
            .arg(&adapter)
            .arg("--out")
            .arg(&merged));
        let merged_loss = loss(&merged, None, &data);
        assert!(
            (merged_loss - after).abs() < 1e-4,
            "{format}: merged {merged_loss} vs adapter {after}"
        );
    }

    // An adapter belongs to its base.
    let out = bin()
        .args(["eval", "loss", "--json", "--model"])
        .arg(fixture("llama"))
        .arg("--adapter")
        .arg(&adapter)
        .arg("--text")
        .arg(fixture("eval.txt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another base model"),
        "{err}"
    );
}

#[test]
fn bad_lora_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("gpt2");
    let text = fixture("eval.txt");
    for (flags, message) in [
        (vec!["--lora-rank", "0"], "rank must be at least 1"),
        (vec!["--lora-targets", "q,x"], "unknown LoRA target \"x\""),
        (vec!["--lora-targets", "head"], "untied head"),
    ] {
        let out = bin()
            .arg("finetune")
            .args(&flags)
            .arg("--model")
            .arg(&base)
            .arg("--data")
            .arg(&text)
            .arg("--out")
            .arg(tmp.path().join("r"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(message),
            "{flags:?}: {err}"
        );
    }
}

/// A text of exactly `n` GPT-2 tokens (the opening of Moby-Dick, repeated).
fn text_of_tokens(n: usize) -> String {
    let tok = arcane::Tokenizer::gpt2();
    let eval = std::fs::read_to_string(fixture("eval.txt")).unwrap();
    let ids: Vec<u32> = tok.encode(&eval.repeat(4)).into_iter().take(n).collect();
    tok.decode(&ids).unwrap()
}

fn finetune_small(text: &Path, out: &Path) -> Command {
    let mut cmd = bin();
    cmd.args([
        "finetune",
        "--no-dashboard",
        "--lora-rank",
        "4",
        "--max-steps",
        "12",
    ])
    .args([
        "--eval-every",
        "4",
        "--micro-batch",
        "4",
        "--lr",
        "1e-2",
        "--model",
    ])
    .arg(fixture("gpt2"))
    .arg("--data")
    .arg(text)
    .arg("--out")
    .arg(out);
    cmd
}

#[test]
fn finetuning_on_300_tokens_keeps_adapters_only_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("small.txt");
    std::fs::write(&text, text_of_tokens(300)).unwrap();
    let whole = tmp.path().join("whole");
    let out = run(&mut finetune_small(&text, &whole));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 5% of ~300 tokens is too short for one validation window of the model's 64 + 1.
    assert!(
        stderr.contains("note: the val split") && stderr.contains("windows of"),
        "{stderr}"
    );
    let losses: Vec<f64> = std::fs::read_to_string(whole.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 12);
    // The fixture model was trained on this text already (loss ~1.0): it still learns.
    assert!(losses[11] < 0.95 * losses[0], "the loss falls: {losses:?}");

    // Checkpoints hold the adapters and their optimizer state, not the frozen base.
    let dir = whole.join("checkpoint");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("model-")), "{names:?}");
    let size = |name: &str| std::fs::metadata(dir.join(name)).unwrap().len();
    let checkpoint: u64 = [
        "adapter-12.safetensors",
        "optim-12.mpk",
        "scheduler-12.mpk",
        "state-12.json",
    ]
    .iter()
    .map(|n| size(n))
    .sum();
    let base = std::fs::metadata(fixture("gpt2/model.safetensors"))
        .unwrap()
        .len();
    assert!(
        checkpoint * 20 < base,
        "checkpoint 12 has {checkpoint} bytes, the base {base}"
    );

    // Killed after the files of checkpoint 8 but before its state file: resumed from 4, it
    // ends with the same adapter, bit for bit.
    let killed = tmp.path().join("killed");
    let out = finetune_small(&text, &killed)
        .env(arcane::io::CRASH_VAR, "before-state:8")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the crash hook killed the run");
    run(bin()
        .args(["finetune", "--no-dashboard", "--resume"])
        .arg(&killed));
    assert_same_tensors(
        &whole.join("adapter.safetensors"),
        &killed.join("adapter.safetensors"),
    );
    // The flags that set up a run cannot change on resume.
    let out = bin()
        .args(["finetune", "--resume"])
        .arg(&killed)
        .args(["--lr", "0.1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--lr cannot change on --resume"),
        "{err}"
    );
}
