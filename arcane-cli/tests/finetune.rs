//! LoRA fine-tuning through the binary: it lowers the loss on new text, leaves the base file
//! untouched, keeps a small adapter, and merges into a plain model that scores the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

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
