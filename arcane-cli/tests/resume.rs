//! Stopping and resuming runs through the binary: SIGTERM / SIGINT write a checkpoint and
//! exit 143 / 130, resume is exact, a resume cannot drift from the run it continues, an
//! extension is explicit, and the intervals of validation, checkpoints, logs and HellaSwag
//! are independent.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

#[test]
fn intervals_are_independent() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 9, "eval_every": 2, "checkpoint_every": 3, "log_every": 5, "keep_checkpoints": 10}),
    );
    let run = tmp.path().join("run");
    let stdout = ok(train_cmd(&cfg, &data, &run)
        .arg("--hellaswag")
        .arg(fixture("hellaswag.jsonl"))
        .args(["--hellaswag-every", "4", "--hellaswag-limit", "2"]));
    let steps = |kind: &str| -> Vec<u64> {
        records(&run, kind)
            .iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        checkpoint_steps(&run),
        vec![3, 6, 9],
        "every 3 steps and the last"
    );
    assert_eq!(
        steps("val"),
        vec![2, 4, 6, 8, 9],
        "every 2 steps and the last"
    );
    assert_eq!(steps("hellaswag"), vec![4, 8], "every 4 steps");
    let logged: Vec<&str> = stdout.lines().filter(|l| l.contains("| lr ")).collect();
    assert_eq!(logged.len(), 2, "steps 1 and 5: {logged:?}");
    assert!(logged[0].contains("step      1/9") && logged[1].contains("step      5/9"));
}

#[test]
fn sigterm_and_sigint_stop_with_a_checkpoint_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 30, "checkpoint_every": 10, "eval_every": 10, "keep_checkpoints": 3}),
    );
    let whole = tmp.path().join("whole");
    ok(&mut train_cmd(&cfg, &data, &whole));

    // SIGTERM: the current step ends, a checkpoint is written, exit 143.
    let stopped = tmp.path().join("stopped");
    let child = train_cmd(&cfg, &data, &stopped)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("three steps", || train_losses(&stopped).len() >= 3);
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    let step = train_losses(&stopped).len();
    assert!(step < 30, "the run ended before the signal");
    assert!(
        stderr.contains(&format!(
            "stopped by SIGTERM after step {step} (checkpoint {step} is complete)"
        )) && stderr.contains("continue with `arcane-cli train --resume"),
        "{stderr}"
    );
    assert_eq!(checkpoint_steps(&stopped).last(), Some(&step));

    // SIGINT twice: the second one exits at once (130); whatever was being written, the last
    // complete checkpoint stays usable.
    let child = resume_cmd(&stopped)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("three more steps", || {
        train_losses(&stopped).len() >= step + 3
    });
    signal(&child, "INT");
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("SIGINT"), "{stderr}");

    ok(&mut resume_cmd(&stopped));
    assert_same_run(&whole, &stopped, 30);
}

#[test]
fn a_resume_cannot_drift_and_an_extension_is_explicit() {
    let tmp = tempfile::tempdir().unwrap();
    prepare(tmp.path());
    config(
        tmp.path(),
        json!({"max_steps": 4, "checkpoint_every": 2, "eval_every": 2}),
    );
    // Relative paths, from the folder that holds them.
    ok(bin().current_dir(tmp.path()).args([
        "train",
        "--no-dashboard",
        "--config",
        "config.json",
        "--data",
        "data",
        "--out",
        "run",
    ]));
    let run = tmp.path().join("run");
    let run_file: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert!(Path::new(run_file["data"].as_str().unwrap()).is_absolute());
    let before = records(&run, "train");

    let err = fails(resume_cmd(&run).args(["--max-steps", "8"]));
    assert!(
        err.contains("--max-steps cannot change on --resume") && err.contains("--extend-steps"),
        "{err}"
    );

    // A config.json edited by hand is refused, naming the field; it is not overwritten.
    let config_file = run.join("config.json");
    let original = std::fs::read_to_string(&config_file).unwrap();
    let mut edited: Value = serde_json::from_str(&original).unwrap();
    edited["optimizer"]["max_lr"] = json!(0.01);
    edited["seed"] = json!(8);
    std::fs::write(&config_file, edited.to_string()).unwrap();
    let err = fails(&mut resume_cmd(&run));
    assert!(
        err.contains("optimizer.max_lr: 0.003 -> 0.01") && err.contains("seed: 7 -> 8"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&config_file).unwrap(),
        edited.to_string()
    );
    std::fs::write(&config_file, &original).unwrap();

    // Other data (another validation split) is refused too.
    let other = tmp.path().join("other");
    ok(bin()
        .args(["prepare", "--val-tokens", "2048", "--input"])
        .arg(corpus())
        .arg("--out")
        .arg(&other));
    let err = fails(resume_cmd(&run).arg("--data").arg(&other));
    assert!(
        err.contains("4096 validation tokens") && err.contains("2048"),
        "{err}"
    );

    // Extended from another working directory: 4 more steps at the schedule's final rate.
    ok(bin()
        .current_dir("/")
        .args(["train", "--no-dashboard", "--extend-steps", "4", "--resume"])
        .arg(&run));
    let after = records(&run, "train");
    assert_eq!(after.len(), 8);
    assert_eq!(
        after[..4],
        before[..],
        "the first steps are kept as they were"
    );
    for r in &after[4..] {
        assert_eq!(r["lr"].as_f64().unwrap(), 3e-3 * 0.1, "step {}", r["step"]);
    }
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    assert_eq!(
        (
            saved["max_steps"].as_u64(),
            saved["schedule"]["horizon"].as_u64()
        ),
        (Some(8), Some(4))
    );
}

#[test]
fn a_run_killed_before_its_first_checkpoint_starts_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 12, "checkpoint_every": 100, "eval_every": 100}),
    );
    let whole = tmp.path().join("whole");
    ok(&mut train_cmd(&cfg, &data, &whole));
    let early = tmp.path().join("early");
    let mut child = train_cmd(&cfg, &data, &early)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a first step", || !train_losses(&early).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        checkpoint_steps(&early).is_empty(),
        "killed before its only checkpoint"
    );
    let out = run(&mut resume_cmd(&early));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no complete checkpoint yet: starting it from step 0"),
        "{stderr}"
    );
    assert_same_run(&whole, &early, 12);
}
