//! Helpers of the end-to-end tests: the binary, the bundled corpus prepared small, a fast
//! training config, and comparisons of runs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Runs the binary with `args` and returns what it did.
pub fn cli(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Runs a command that must succeed and returns its stdout parsed as JSON.
pub fn stdout_json(args: &[&str]) -> Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON value")
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arcane-cli"))
}

pub fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/moby-dick.txt.gz")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../arcane/tests/fixtures")
        .join(name)
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs a command that must fail with exit code 1 and no panic; returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?} should fail cleanly: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{cmd:?} panicked: {stderr}");
    stderr
}

/// Prepares the bundled corpus into `dir/data` (4096 validation tokens, 100k-token shards).
pub fn prepare(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    ok(bin()
        .args(["prepare", "--input"])
        .arg(corpus())
        .arg("--out")
        .arg(&data)
        .args(["--val-tokens", "4096", "--shard-tokens", "100000"]));
    data
}

/// A small, fast training config (d=32, T=32, 128 tokens per step) with `overrides`.
pub fn config(dir: &Path, overrides: Value) -> PathBuf {
    let mut c = json!({
        "model": {"vocab_size": 50304, "max_seq_len": 32, "d_model": 32, "n_layers": 2, "n_heads": 2,
                  "positions": "rope", "norm": "rms_norm", "norm_bias": false, "mlp": "swiglu",
                  "mlp_hidden": 64, "bias": false, "tie_embeddings": true},
        "seed": 7, "micro_batch": 2, "tokens_per_step": 128, "max_steps": 8,
        "optimizer": {"max_lr": 3e-3},
        "schedule": {"warmup_steps": 2},
        "eval_every": 2, "eval_tokens": 256, "checkpoint_every": 4, "keep_checkpoints": 2,
        "sample_tokens": 4, "log_every": 1
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    let path = dir.join("config.json");
    std::fs::write(&path, c.to_string()).unwrap();
    path
}

pub fn train_cmd(cfg: &Path, data: &Path, out: &Path) -> Command {
    let mut cmd = bin();
    cmd.args(["train", "--no-dashboard", "--config"])
        .arg(cfg)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    cmd
}

pub fn resume_cmd(run_dir: &Path) -> Command {
    let mut cmd = bin();
    cmd.args(["train", "--no-dashboard", "--resume"])
        .arg(run_dir);
    cmd
}

/// Every record of a run's metrics.jsonl of kind `kind`.
pub fn records(run: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// (step, loss) of every training record in a run's metrics.jsonl.
pub fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    records(run, "train")
        .iter()
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Steps of the complete checkpoints of a run.
pub fn checkpoint_steps(run: &Path) -> Vec<usize> {
    let mut steps: Vec<usize> = std::fs::read_dir(run.join("checkpoint"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| {
                    n.strip_prefix("state-")?
                        .strip_suffix(".json")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    steps.sort_unstable();
    steps
}

/// Largest difference between the tensors of two safetensors files (names must match).
pub fn tensor_diff(a: &Path, b: &Path) -> f32 {
    let read = |p: &Path| arcane::weights::read_safetensors(&[p.to_path_buf()]).unwrap();
    let (a, b) = (read(a), read(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .flat_map(|(name, t)| {
            t.values
                .iter()
                .zip(&b[name].values)
                .map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

/// Largest difference between the final weights of two runs.
pub fn weight_diff(a: &Path, b: &Path) -> f32 {
    tensor_diff(&a.join("model.safetensors"), &b.join("model.safetensors"))
}

/// Asserts that two runs logged the same steps with the same losses and ended with the same
/// weights, bit for bit.
pub fn assert_same_run(whole: &Path, pieces: &Path, steps: usize) {
    let (a, b) = (train_losses(whole), train_losses(pieces));
    assert_eq!(a.len(), steps, "the reference logs every step once");
    assert_eq!(b.len(), steps, "the resumed log has each step once: {b:?}");
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert_eq!(
            la, lb,
            "step {sa}: {la} (one go) vs {lb} (stopped and resumed)"
        );
    }
    assert_same_tensors(
        &whole.join("model.safetensors"),
        &pieces.join("model.safetensors"),
    );
}

/// Asserts that two safetensors files hold the same tensors, bit for bit (the files' bytes may
/// differ: their metadata is a hash map, written in any order).
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let read = |p: &Path| arcane::weights::read_safetensors(&[p.to_path_buf()]).unwrap();
    let bits =
        |t: &arcane::weights::HostTensor| t.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (ta, tb) = (read(a), read(b));
    assert!(!ta.is_empty(), "{} holds no tensors", a.display());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, x) in &ta {
        assert!(
            x.shape == tb[name].shape && bits(x) == bits(&tb[name]),
            "{name} differs by up to {}",
            tensor_diff(a, b)
        );
    }
}

/// Waits until `done()` (polling), failing after two minutes.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `signal` (`TERM`, `INT`, `KILL`) to a child process.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

/// Files in a run's checkpoint folder that are neither complete checkpoints nor their parts:
/// temporaries and the files of incomplete checkpoints.
pub fn leftovers(run: &Path) -> Vec<String> {
    let complete = checkpoint_steps(run);
    std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let step = name
                .split(['-', '.'])
                .nth(1)
                .and_then(|s| s.parse::<usize>().ok());
            name.starts_with('.') || step.is_none_or(|s| !complete.contains(&s))
        })
        .collect()
}

/// Saves a tiny random Arcane model with GPT-2's vocabulary padded to 50304 (so ChatML's tokens
/// fit on its spare rows) into `dir`.
pub fn tiny_padded_gpt2(dir: &Path) {
    let config = arcane::ModelConfig {
        vocab_size: 50304,
        d_model: 16,
        n_layers: 1,
        n_heads: 2,
        ..arcane::ModelConfig::tiny()
    };
    let model = config
        .init::<burn::backend::Flex>(&Default::default())
        .unwrap();
    arcane::save_model(&model, dir).unwrap();
}
