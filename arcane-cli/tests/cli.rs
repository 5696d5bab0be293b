//! End-to-end tests of the `arcane-cli` binary on the committed fixtures: the numbers it prints
//! must be transformers' numbers, and bad input must fail with a message, not a panic.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("arcane/tests/fixtures").join(name)
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap()
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arcane-cli"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed and returns its stdout parsed as JSON.
fn json(args: &[&str]) -> Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON value")
}

/// Runs a command that must fail cleanly and returns its stderr.
fn failure(args: &[&str]) -> String {
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should exit with 1: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

#[test]
fn generate_gives_transformers_greedy_ids() {
    let r = reference();
    let gpt2 = fixture("gpt2");
    let prompt = r["gpt2"]["greedy_prompt_text"].as_str().unwrap();
    let out = json(&[
        "generate",
        "--model",
        gpt2.to_str().unwrap(),
        "--prompt",
        prompt,
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(out["prompt_ids"], r["gpt2"]["greedy"]["prompt"]);
    assert_eq!(out["ids"], r["gpt2"]["greedy"]["ids"]);
    assert!(out["text"].as_str().unwrap().len() > 10);
}

#[test]
fn sampling_is_seeded() {
    let gpt2 = fixture("gpt2");
    let run = |seed: &str| {
        json(&[
            "generate",
            "--model",
            gpt2.to_str().unwrap(),
            "--prompt",
            "Call me",
            "--max-new-tokens",
            "16",
            "--top-k",
            "40",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--json",
        ])["ids"]
            .clone()
    };
    assert_eq!(run("1"), run("1"));
    assert_ne!(run("1"), run("2"));
}

#[test]
fn eval_loss_gives_transformers_loss() {
    let r = reference();
    let (gpt2, text) = (fixture("gpt2"), fixture("eval.txt"));
    for (key, window) in [("eval", None), ("eval_window_16", Some("16"))] {
        let mut args = vec![
            "eval",
            "loss",
            "--model",
            gpt2.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--json",
        ];
        if let Some(w) = window {
            args.extend(["--window", w]);
        }
        let out = json(&args);
        let expected = r["gpt2"][key]["loss"].as_f64().unwrap();
        assert!(
            (out["loss"].as_f64().unwrap() - expected).abs() < 1e-4,
            "{key}: {out} vs {expected}"
        );
        assert_eq!(out["tokens"], r["gpt2"][key]["tokens"]);
        let ppl = out["perplexity"].as_f64().unwrap();
        assert!((ppl - expected.exp()).abs() < 1e-3);
    }
}

#[test]
fn convert_round_trips_through_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let (arcane_dir, hf_dir) = (tmp.path().join("arcane"), tmp.path().join("hf"));
    let text = fixture("eval.txt");
    let src = fixture("gpt2");
    for (from, to, format) in [(&src, &arcane_dir, "arcane"), (&arcane_dir, &hf_dir, "hf")] {
        let out = cli(&[
            "convert",
            "--model",
            from.to_str().unwrap(),
            "--out",
            to.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let loss = |dir: &PathBuf| {
        json(&[
            "eval",
            "loss",
            "--model",
            dir.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--json",
        ])["loss"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(loss(&src), loss(&arcane_dir));
    assert_eq!(loss(&src), loss(&hf_dir));
}

#[test]
fn info_reports_parameters_and_flops() {
    let out = json(&["info", "--config", "gpt2-124m", "--json"]);
    assert_eq!(out["params"], 124_439_808);
    // 6N + 12·L·d·T with N excluding the position table.
    let n = 124_439_808.0 - 1024.0 * 768.0;
    let expected = 6.0 * n + 12.0 * 12.0 * 768.0 * 1024.0;
    assert_eq!(out["train_flops_per_token"].as_f64().unwrap(), expected);
}

#[test]
fn config_files_match_the_presets() {
    for name in arcane::model::PRESETS {
        let path = root().join("configs/models").join(format!("{name}.json"));
        let from_file = json(&["info", "--config", path.to_str().unwrap(), "--json"]);
        let preset = json(&["info", "--config", name, "--json"]);
        assert_eq!(
            from_file["model"], preset["model"],
            "configs/models/{name}.json drifted from the preset"
        );
    }
}

#[test]
fn bench_prints_one_json_line_per_measurement() {
    for kind in ["forward", "decode"] {
        let out = json(&[
            "bench",
            kind,
            "--config",
            "tiny",
            "--seq-len",
            "32",
            "--repeats",
            "2",
        ]);
        assert_eq!(out["bench"], kind);
        assert_eq!(out["backend"], "cpu");
        assert!(out["tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(out["achieved_gflops"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bad_input_fails_with_a_message() {
    let gpt2 = fixture("gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let err = failure(&["generate", "--model", "/no/such/dir", "--prompt", "hi"]);
    assert!(err.contains("no such model directory"), "{err}");
    let err = failure(&[
        "generate", "--model", gpt2, "--prompt", "hi", "--top-p", "1.5",
    ]);
    assert!(err.contains("top-p"), "{err}");
    let err = failure(&[
        "eval",
        "loss",
        "--model",
        gpt2,
        "--text",
        "/no/such/file.txt",
    ]);
    assert!(err.contains("/no/such/file.txt"), "{err}");
    let llama = fixture("llama");
    let err = failure(&[
        "generate",
        "--model",
        llama.to_str().unwrap(),
        "--prompt",
        "Hello",
    ]);
    assert!(err.contains("vocabulary of 512"), "{err}");
    let err = failure(&["info", "--config", "gpt5"]);
    assert!(err.contains("neither a preset"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.bin");
    std::fs::write(&bad, [0xffu8, 0xfe, 0x41]).unwrap();
    let err = failure(&[
        "eval",
        "loss",
        "--model",
        gpt2,
        "--text",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("not UTF-8"), "{err}");
    let long = "word ".repeat(100);
    let err = failure(&["generate", "--model", gpt2, "--prompt", &long]);
    assert!(err.contains("context is 64 tokens"), "{err}");
}

#[test]
fn a_backend_missing_from_the_build_is_explained() {
    if cfg!(feature = "cuda") {
        return;
    }
    let gpt2 = fixture("gpt2");
    let err = failure(&[
        "generate",
        "--model",
        gpt2.to_str().unwrap(),
        "--prompt",
        "hi",
        "--backend",
        "cuda",
    ]);
    assert!(err.contains("--features cuda"), "{err}");
}
