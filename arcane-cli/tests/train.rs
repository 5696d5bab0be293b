//! End-to-end training through the binary: prepare, train, kill, resume exactly, and the
//! failures a user can cause (bad data, bad batch arithmetic, a diverging run).

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

#[test]
fn prepare_is_deterministic_and_reports_its_split() {
    let tmp = tempfile::tempdir().unwrap();
    let a = prepare(tmp.path());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["val_tokens"], 4096);
    assert!(manifest["train_tokens"].as_u64().unwrap() > 250_000);
    assert_eq!(
        manifest["train_shards"].as_array().unwrap().len(),
        4,
        "100k-token shards"
    );
    let b = tmp.path().join("again");
    ok(bin()
        .args(["prepare", "--input"])
        .arg(corpus())
        .arg("--out")
        .arg(&b)
        .args(["--val-tokens", "4096", "--shard-tokens", "100000"]));
    for name in ["train_000000.bin", "train_000003.bin", "val_000000.bin"] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs between runs"
        );
    }
}

#[test]
fn training_learns_and_leaves_a_usable_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let run_dir = tmp.path().join("run");
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 30, "eval_every": 10, "checkpoint_every": 10, "optimizer": {"max_lr": 1e-2}}),
    );
    let stdout = ok(&mut train_cmd(&cfg, &data, &run_dir));
    assert!(stdout.contains("sample:"), "{stdout}");
    let losses = train_losses(&run_dir);
    assert_eq!(losses.len(), 30);
    let first = losses[..3].iter().map(|l| l.1).sum::<f64>() / 3.0;
    let last = losses[27..].iter().map(|l| l.1).sum::<f64>() / 3.0;
    assert!(
        last < first - 1.5,
        "loss should fall: {first:.3} -> {last:.3}"
    );
    for file in [
        "loss.png",
        "loss.svg",
        "config.json",
        "arcane.json",
        "model.safetensors",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let steps: Vec<_> = std::fs::read_dir(run_dir.join("checkpoint"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("state-"))
        .collect();
    assert_eq!(steps.len(), 2, "keep_checkpoints = 2: {steps:?}");
    // The run folder is a model for generate and eval loss.
    let out = ok(bin()
        .args([
            "generate",
            "--max-new-tokens",
            "5",
            "--json",
            "--prompt",
            "The whale",
            "--model",
        ])
        .arg(&run_dir));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["ids"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    ok(bin()
        .args(["eval", "loss", "--json", "--text"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../arcane/tests/fixtures/eval.txt"))
        .arg("--model")
        .arg(&run_dir));
    // plot draws several runs together.
    let out = tmp.path().join("both");
    ok(bin()
        .arg("plot")
        .arg(&run_dir)
        .arg(&run_dir)
        .arg("--out")
        .arg(&out));
    assert!(out.with_extension("png").is_file());
}

#[test]
fn a_killed_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 40, "checkpoint_every": 4, "eval_every": 4, "keep_checkpoints": 10}),
    );
    // Reference: 40 steps in one go.
    let whole = tmp.path().join("whole");
    ok(&mut train_cmd(&cfg, &data, &whole));
    // Same run, killed with SIGKILL once its first checkpoint is complete.
    let killed = tmp.path().join("killed");
    let mut child = train_cmd(&cfg, &data, &killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = killed.join("checkpoint/state-4.json");
    wait_for("the first checkpoint", || marker.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let seen = train_losses(&killed).len();
    assert!(
        seen < 40,
        "the run finished before it could be killed ({seen} steps)"
    );
    ok(&mut resume_cmd(&killed));
    assert_same_run(&whole, &killed, 40);
}

#[test]
fn bad_inputs_are_errors_with_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    // Batch arithmetic that does not divide.
    let cfg = config(tmp.path(), json!({"tokens_per_step": 100}));
    let err = fails(&mut train_cmd(&cfg, &data, &tmp.path().join("r1")));
    assert!(
        err.contains("tokens_per_step (100) must be a whole multiple"),
        "{err}"
    );
    // GPT-2 token ids for a model with a vocabulary of 1000: the shard is named.
    let mut small_vocab = serde_json::from_str::<Value>(
        &std::fs::read_to_string(config(tmp.path(), json!({}))).unwrap(),
    )
    .unwrap();
    small_vocab["model"]["vocab_size"] = json!(1000);
    let cfg = config(tmp.path(), json!({"model": small_vocab["model"]}));
    let err = fails(&mut train_cmd(&cfg, &data, &tmp.path().join("r0")));
    assert!(
        err.contains("train_000000.bin") && err.contains("outside the model's vocabulary of 1000"),
        "{err}"
    );
    // A misspelled field.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"max_step": 3}"#).unwrap();
    assert!(fails(&mut train_cmd(&bad, &data, &tmp.path().join("r2"))).contains("unknown field"));
    // Missing data, and a corrupt shard.
    let cfg = config(tmp.path(), json!({}));
    assert!(fails(&mut train_cmd(
        &cfg,
        &tmp.path().join("nothing"),
        &tmp.path().join("r3")
    ))
    .contains("nothing"));
    let shard = data.join("val_000000.bin");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
    let err = fails(&mut train_cmd(&cfg, &data, &tmp.path().join("r4")));
    assert!(err.contains("truncated"), "{err}");
    // Inputs prepare cannot read.
    let text = tmp.path().join("latin1.txt");
    std::fs::write(&text, [b'c', b'a', b'f', 0xe9]).unwrap();
    assert!(fails(
        bin()
            .args(["prepare", "--input"])
            .arg(&text)
            .arg("--out")
            .arg(tmp.path().join("d2"))
    )
    .contains("not UTF-8"));
    let jsonl = tmp.path().join("docs.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"fine\"}\nnot json\n").unwrap();
    assert!(fails(
        bin()
            .args(["prepare", "--input"])
            .arg(&jsonl)
            .arg("--out")
            .arg(tmp.path().join("d3"))
    )
    .contains("line 2 is not JSON"));
    assert!(fails(
        bin()
            .args(["prepare", "--input"])
            .arg(tmp.path().join("none.txt"))
            .arg("--out")
            .arg(tmp.path().join("d4"))
    )
    .contains("none.txt"));
    // Resuming something that is not a run.
    let empty = tempfile::tempdir().unwrap();
    assert!(fails(bin().args(["train", "--resume"]).arg(empty.path())).contains("not a run folder"));
}

#[test]
fn a_diverging_run_stops_and_keeps_its_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 20, "checkpoint_every": 1, "eval_every": 1, "schedule": {"warmup_steps": 0}, "optimizer": {"max_lr": 1e30, "grad_clip": 0.0}}),
    );
    let run_dir = tmp.path().join("run");
    let err = fails(&mut train_cmd(&cfg, &data, &run_dir));
    assert!(
        err.contains("the loss is") && err.contains("last good checkpoint"),
        "{err}"
    );
    let states: Vec<String> = std::fs::read_dir(run_dir.join("checkpoint"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("state-"))
        .collect();
    let losses = train_losses(&run_dir);
    let last_good = losses.len();
    assert!(
        losses.iter().all(|(_, l)| l.is_finite()),
        "only finite steps are logged: {losses:?}"
    );
    assert_eq!(
        states,
        vec![format!("state-{last_good}.json")],
        "the checkpoint of the last finite step stays"
    );
    // The run can be resumed from it (and stops again at the same point).
    let err = fails(
        bin()
            .args(["train", "--no-dashboard", "--resume"])
            .arg(&run_dir),
    );
    assert!(err.contains(&format!("step {}", last_good + 1)), "{err}");
}

#[test]
fn a_divergence_found_in_a_batch_of_read_back_steps_is_never_checkpointed() {
    // Figures are read back every 4 steps; the run diverges inside such a batch.
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 40, "checkpoint_every": 4, "eval_every": 4, "log_every": 4,
               "schedule": {"warmup_steps": 6}, "optimizer": {"max_lr": 1e4, "grad_clip": 0.0}}),
    );
    let run_dir = tmp.path().join("run");
    let err = fails(&mut train_cmd(&cfg, &data, &run_dir));
    let losses = train_losses(&run_dir);
    let bad = losses.len() + 1;
    // (It diverges at step 6 here: after the first checkpoint, inside the second batch.)
    assert!(bad > 4, "diverged too early to test batching: {err}");
    assert!(checkpoint_steps(&run_dir).contains(&4), "{err}");
    assert!(
        err.contains(&format!("training stopped at step {bad}")),
        "{err} (logged {losses:?})"
    );
    assert!(losses.iter().all(|(_, l)| l.is_finite()), "{losses:?}");
    let states = checkpoint_steps(&run_dir);
    assert!(
        states.iter().all(|&s| s < bad),
        "checkpoints {states:?} after the non-finite step {bad}"
    );
    let vals = records(&run_dir, "val");
    assert!(
        vals.iter()
            .all(|v| v["step"].as_u64().unwrap() < bad as u64),
        "validated after the non-finite step: {vals:?}"
    );
}

#[test]
fn hellaswag_runs_inside_training_and_is_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(tmp.path(), json!({"max_steps": 4, "checkpoint_every": 4}));
    let run_dir = tmp.path().join("run");
    let hellaswag =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../arcane/tests/fixtures/hellaswag.jsonl");
    let stdout = ok(train_cmd(&cfg, &data, &run_dir)
        .arg("--hellaswag")
        .arg(&hellaswag)
        .args(["--hellaswag-every", "2", "--hellaswag-limit", "5"]));
    assert!(stdout.contains("HellaSwag acc_norm"), "{stdout}");
    let records: Vec<Value> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hs: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "hellaswag")
        .collect();
    assert_eq!(hs.len(), 2, "at steps 2 and 4");
    assert!(hs
        .iter()
        .all(|r| r["n"] == 5 && (0.0..=1.0).contains(&r["acc_norm"].as_f64().unwrap())));
    // Three panels: loss vs steps, loss vs tokens, HellaSwag.
    let svg = std::fs::read_to_string(run_dir.join("loss.svg")).unwrap();
    assert!(
        svg.contains("HellaSwag"),
        "the picture has a HellaSwag panel"
    );
    // A missing file is caught before any training.
    let err =
        fails(train_cmd(&cfg, &data, &tmp.path().join("r2")).args(["--hellaswag", "/no/hs.jsonl"]));
    assert!(err.contains("/no/hs.jsonl"), "{err}");
}

#[test]
fn training_works_on_a_few_hundred_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("small.txt");
    let tok = arcane::Tokenizer::gpt2();
    let eval = std::fs::read_to_string(fixture("eval.txt")).unwrap();
    let ids: Vec<u32> = tok.encode(&eval.repeat(4)).into_iter().take(300).collect();
    std::fs::write(&text, tok.decode(&ids).unwrap()).unwrap();
    let data = tmp.path().join("data");
    ok(bin()
        .args(["prepare", "--input"])
        .arg(&text)
        .arg("--out")
        .arg(&data));
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 6, "eval_every": 3, "checkpoint_every": 3}),
    );
    let run_dir = tmp.path().join("run");
    let out = run(&mut train_cmd(&cfg, &data, &run_dir));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The validation split (5% of the text) is shorter than one window of 33 tokens: it is
    // read as one window of all its tokens.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("manifest.json")).unwrap())
            .unwrap();
    let val_tokens = manifest["val_tokens"].as_u64().unwrap();
    assert!(val_tokens < 33, "{val_tokens}");
    assert!(
        stderr.contains(&format!("windows of {} tokens", val_tokens - 1)),
        "{stderr}"
    );
    let val: Vec<f64> = records(&run_dir, "val")
        .iter()
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(val.len(), 2);
    assert!(val.iter().all(|l| l.is_finite() && *l > 0.0), "{val:?}");
}
