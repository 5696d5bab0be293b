//! Alignment through the binary on the tiny GPT-2 fixture: `reward train` writes a reward
//! model that `reward eval` scores the same; `dpo`, `ppo` and `rloo` write adapters or models
//! that `generate`, `lora merge` and `eval reward` use; bad input is refused with line numbers
//! and a reward model of another vocabulary is refused.

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

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../arcane/data/sentiment")
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

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

/// The first `n` lines of a bundled file, copied into `dir`.
fn head(dir: &Path, name: &str, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(data(name)).unwrap();
    let path = dir.join(name);
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn args<'a>(cmd: &'a mut Command, pairs: &[(&str, &Path)]) -> &'a mut Command {
    for (flag, value) in pairs {
        cmd.arg(flag).arg(value);
    }
    cmd
}

#[test]
fn reward_dpo_ppo_and_rloo_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (pairs, test) = (
        head(t, "pairs_train.jsonl", 24),
        head(t, "pairs_test.jsonl", 12),
    );
    let (prompts, held_out) = (
        head(t, "prompts_train.jsonl", 16),
        head(t, "prompts_test.jsonl", 8),
    );
    let model = fixture("gpt2");
    let rm = t.join("rm");
    let trained = json(&run(args(
        bin().args([
            "reward",
            "train",
            "--max-steps",
            "4",
            "--batch",
            "6",
            "--lr",
            "1e-3",
            "--json",
        ]),
        &[
            ("--model", &model),
            ("--data", &pairs),
            ("--eval-data", &test),
            ("--out", &rm),
        ],
    )));
    // The saved model ranks the held-out pairs exactly as measured at the end of training.
    let eval = json(&run(args(
        bin().args(["reward", "eval", "--json"]),
        &[("--model", &rm), ("--data", &test)],
    )));
    for key in ["accuracy", "n", "margin_mean"] {
        assert_eq!(eval[key], trained[key], "{key}");
    }
    assert_eq!(eval["n"], 12);

    let dpo = t.join("dpo");
    let out = json(&run(args(
        bin().args([
            "dpo",
            "--max-steps",
            "2",
            "--batch",
            "4",
            "--lora-rank",
            "2",
            "--json",
        ]),
        &[
            ("--model", &model),
            ("--data", &pairs),
            ("--eval-data", &test),
            ("--out", &dpo),
        ],
    )));
    assert_eq!(out["n"], 12);
    assert!(out["eval/rewards/accuracies"].as_f64().is_some());
    run(args(
        bin().args(["lora", "merge"]),
        &[
            ("--model", &model),
            ("--adapter", &dpo),
            ("--out", &t.join("merged")),
        ],
    ));

    let ppo = t.join("ppo");
    let out = json(&run(args(
        bin()
            .args([
                "ppo",
                "--max-steps",
                "2",
                "--rollouts",
                "8",
                "--minibatch",
                "4",
                "--lora-rank",
                "2",
            ])
            .args([
                "--response-tokens",
                "8",
                "--eval-samples",
                "8",
                "--lr",
                "1e-2",
                "--json",
            ]),
        &[
            ("--model", &model),
            ("--prompts", &prompts),
            ("--reward", &rm),
            ("--eval-prompts", &held_out),
            ("--out", &ppo),
        ],
    )));
    assert_eq!(out["eval/before"]["kl_mean"], 0.0);
    assert!(out["objective/kl_coef"].as_f64().unwrap() > 0.0);
    let metrics = std::fs::read_to_string(ppo.join("metrics.jsonl")).unwrap();
    assert!(metrics
        .lines()
        .any(|l| l.contains("\"kind\":\"align\"") && l.contains("ppo/policy/clipfrac")));
    // The adapter: a policy that differs from the model without it.
    let eval = json(&run(args(
        bin().args([
            "eval",
            "reward",
            "--samples",
            "8",
            "--response-tokens",
            "8",
            "--json",
            "--reward",
            "lexicon",
        ]),
        &[
            ("--model", &model),
            ("--adapter", &ppo),
            ("--prompts", &held_out),
        ],
    )));
    assert_eq!(eval["n"], 8);
    assert!(eval["kl_mean"].as_f64().unwrap() != 0.0, "{eval}");
    for key in ["reward_mean", "reward_std"] {
        assert!(eval[key].as_f64().unwrap().is_finite());
    }
    run(args(
        bin().args(["generate", "--prompt", "The food", "--max-new-tokens", "4"]),
        &[("--model", &model), ("--adapter", &ppo)],
    ));

    // RLOO with full fine-tuning writes a whole model.
    let rloo = t.join("rloo");
    run(args(
        bin()
            .args([
                "ppo",
                "--algo",
                "rloo",
                "--max-steps",
                "1",
                "--rollouts",
                "8",
                "--minibatch",
                "8",
            ])
            .args(["--response-tokens", "4", "--reward", "lexicon"]),
        &[
            ("--model", &model),
            ("--prompts", &prompts),
            ("--out", &rloo),
        ],
    ));
    run(args(
        bin().args(["generate", "--prompt", "The", "--max-new-tokens", "2"]),
        &[("--model", &rloo)],
    ));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let model = fixture("gpt2");
    let pairs = t.join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"chosen\": \" the and\", \"rejected\": \" of to\"}\n{\"chosen\": 3}\n{\"chosen\": \" and the\", \"rejected\": \" to of\"}\n",
    )
    .unwrap();
    let rm = t.join("rm");
    let train = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["reward", "train", "--max-steps", "1"])
            .args(extra);
        args(
            &mut cmd,
            &[("--model", &model), ("--data", &pairs), ("--out", &rm)],
        );
        cmd
    };
    let err = fails(&mut train(&[]));
    assert!(
        err.contains("line 2") && err.contains("--skip-bad"),
        "{err}"
    );
    let out = run(&mut train(&["--skip-bad"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped line 2"));

    let prompts = t.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"The\"}\n{\"text\": \"x\"}\n").unwrap();
    let ppo = |reward: &Path| {
        let mut cmd = bin();
        cmd.args([
            "ppo",
            "--max-steps",
            "1",
            "--rollouts",
            "4",
            "--minibatch",
            "4",
            "--response-tokens",
            "4",
        ]);
        args(
            &mut cmd,
            &[
                ("--model", &model),
                ("--prompts", &prompts),
                ("--reward", reward),
                ("--out", &t.join("ppo")),
            ],
        );
        cmd
    };
    let err = fails(&mut ppo(&rm));
    assert!(err.contains("line 2: no string field \"prompt\""), "{err}");
    std::fs::write(&prompts, "{\"prompt\": \"The\"}\n").unwrap();
    let err = fails(&mut ppo(Path::new("no-such-reward")));
    assert!(err.contains("not a reward model directory"), "{err}");

    // A reward model on the Llama fixture (512 tokens) cannot read what GPT-2 policies write.
    let llama_rm = t.join("llama-rm");
    run(args(
        bin().args(["reward", "train", "--max-steps", "1"]),
        &[
            ("--model", &fixture("llama")),
            ("--data", &pairs),
            ("--out", &llama_rm),
        ],
    )
    .arg("--skip-bad"));
    let err = fails(&mut ppo(&llama_rm));
    assert!(err.contains("vocabulary of 512"), "{err}");
    // It reads pairs with its own tokenizer (saved beside it), not GPT-2's.
    let out = json(&run(args(
        bin().args(["reward", "eval", "--json"]),
        &[
            ("--model", &llama_rm),
            ("--data", &data("pairs_test.jsonl")),
        ],
    )));
    assert_eq!(out["n"], 300, "{out}");
}
