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

/// `--precision bf16` stores the weights in bf16: the fixture's greedy continuation is
/// transformers' still, the loss of `eval loss` moves by under 1% (each weight moves by at
/// most 2^-8 of itself), and a backend without bf16 tensors is refused with a way out.
#[test]
fn bf16_weights_keep_the_greedy_ids_and_the_loss() {
    let r = reference();
    let gpt2 = fixture("gpt2");
    let prompt = r["gpt2"]["greedy_prompt_text"].as_str().unwrap();
    let model = gpt2.to_str().unwrap();
    let generate = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", model, "--prompt", prompt];
        args.extend(["--max-new-tokens", "12", "--temperature", "0", "--json"]);
        args.extend(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let args = generate(&["--precision", "bf16"]);
    let out = json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out["ids"], r["gpt2"]["greedy"]["ids"]);
    let text = fixture("eval.txt");
    let loss = |precision: &str| {
        json(&[
            "eval",
            "loss",
            "--model",
            model,
            "--text",
            text.to_str().unwrap(),
            "--json",
            "--precision",
            precision,
        ])["loss"]
            .as_f64()
            .unwrap()
    };
    let (f32_loss, bf16_loss) = (loss("f32"), loss("bf16"));
    assert!(
        (bf16_loss - f32_loss).abs() < 0.01 * f32_loss && bf16_loss != f32_loss,
        "bf16 loss {bf16_loss} vs f32 {f32_loss}"
    );
    let args = generate(&["--precision", "bf16", "--backend", "wgpu"]);
    let err = failure(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("--precision f32"), "{err}");
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
fn training_config_files_match_the_presets() {
    use arcane::training::{TrainingConfig, TRAINING_PRESETS};
    for name in TRAINING_PRESETS {
        let path = root().join("configs").join(format!("{name}.json"));
        let from_file = TrainingConfig::from_file(&path).unwrap();
        let preset = TrainingConfig::preset(name).unwrap();
        assert_eq!(
            serde_json::to_value(&from_file).unwrap(),
            serde_json::to_value(&preset).unwrap(),
            "configs/{name}.json drifted from the preset"
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
    assert_eq!(
        err.matches("no such model directory").count(),
        1,
        "said once: {err}"
    );
    // A negative value is a bad value, not an unknown flag.
    let err = failure(&[
        "generate",
        "--model",
        gpt2,
        "--prompt",
        "hi",
        "--temperature",
        "-1",
    ]);
    assert!(err.contains("temperature"), "{err}");
    let out = cli(&[
        "generate",
        "--model",
        gpt2,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "-5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value '-5' for '--max-new-tokens"),
        "{err}"
    );
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
    assert_eq!(err.matches("(os error 2)").count(), 1, "said once: {err}");
    // A Llama folder without its tokenizer.json.
    let bare = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("llama").join(file), bare.path().join(file)).unwrap();
    }
    let err = failure(&[
        "generate",
        "--model",
        bare.path().to_str().unwrap(),
        "--prompt",
        "Hello",
    ]);
    assert!(
        err.contains("vocabulary of 512") && err.contains("tokenizer.json"),
        "{err}"
    );
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

#[test]
fn eval_hellaswag_gives_transformers_predictions() {
    let r = reference();
    let expected = r["gpt2"]["hellaswag"].as_array().unwrap();
    let n = expected.len() as f64;
    let hits = |key: &str| expected.iter().filter(|e| e[key] == e["label"]).count() as f64 / n;
    let tmp = tempfile::tempdir().unwrap();
    let preds = tmp.path().join("preds.jsonl");
    let (gpt2, data) = (fixture("gpt2"), fixture("hellaswag.jsonl"));
    let out = json(&[
        "eval",
        "hellaswag",
        "--model",
        gpt2.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--batch",
        "3",
        "--json",
        "--predictions",
        preds.to_str().unwrap(),
    ]);
    assert_eq!(out["n"], expected.len());
    assert_eq!(out["acc"].as_f64().unwrap(), hits("pred"));
    assert_eq!(out["acc_norm"].as_f64().unwrap(), hits("pred_norm"));
    let p = hits("pred_norm");
    assert!((out["acc_norm_stderr"].as_f64().unwrap() - (p * (1.0 - p) / n).sqrt()).abs() < 1e-12);
    let lines: Vec<Value> = std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, e) in lines.iter().zip(expected) {
        assert_eq!(line["ind"], e["ind"]);
        assert_eq!(line["pred"], e["pred"]);
        assert_eq!(line["pred_norm"], e["pred_norm"]);
        assert_eq!(line["mean_losses"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn bad_hellaswag_lines_stop_or_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(fixture("hellaswag.jsonl")).unwrap();
    let mut lines: Vec<String> = good.lines().take(3).map(str::to_string).collect();
    lines.insert(1, "not json".into());
    lines.push(r#"{"ctx": "a", "endings": ["b", "c"], "label": 0}"#.into());
    lines.push(r#"{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": 7}"#.into());
    let data = tmp.path().join("mixed.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let gpt2 = fixture("gpt2");
    let base = [
        "eval",
        "hellaswag",
        "--model",
        gpt2.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let err = failure(&base);
    assert!(
        err.contains("line 2") && err.contains("not JSON") && err.contains("--skip-bad"),
        "{err}"
    );
    let out = cli(&[&base[..], &["--skip-bad", "--json"]].concat());
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 5: 2 endings instead of 4")
            && stderr.contains("line 6: label 7 is out of range"),
        "{stderr}"
    );
    assert!(stderr.contains("skipped 3 bad line(s)"), "{stderr}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["n"],
        3
    );
    // An empty context is a bad line too: skipped with --skip-bad.
    lines.push(r#"{"ctx": " ", "endings": ["b", "c", "d", "e"], "label": 1}"#.into());
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = cli(&[&base[..], &["--skip-bad", "--json"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("line 7: the context is empty"), "{stderr}");
    assert!(failure(&[
        "eval",
        "hellaswag",
        "--model",
        gpt2.to_str().unwrap(),
        "--data",
        "/no/such.jsonl"
    ])
    .contains("/no/such.jsonl"));
}

#[test]
fn eval_loss_reads_prepared_validation_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let text = fixture("eval.txt");
    let out = cli(&[
        "prepare",
        "--input",
        text.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
        "--val-tokens",
        "100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gpt2 = fixture("gpt2");
    let all = json(&[
        "eval",
        "loss",
        "--model",
        gpt2.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(all["tokens"], 99, "100 validation tokens, 99 predicted");
    let part = json(&[
        "eval",
        "loss",
        "--model",
        gpt2.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--max-tokens",
        "50",
        "--json",
    ]);
    assert_eq!(part["tokens"], 49);
    assert!(all["loss"].as_f64().unwrap().is_finite());
}
