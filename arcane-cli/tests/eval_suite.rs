//! End-to-end tests of `eval <task>` and `eval suite`: the figures and per-document
//! predictions printed are `scripts/eval_reference.py`'s (lm-eval's scoring in PyTorch),
//! bundled data loads without `--data`, bad requests fail with a message, and the suite runs
//! inside `train`.

mod common;
use common::{cli, fixture, stdout_json as json};

use std::path::PathBuf;

use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("eval_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(a: &Value, b: &Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-9 * y.abs().max(1.0),
            "{what}: {x} vs {y}"
        ),
        (None, None) => {}
        _ => panic!("{what}: {a} vs {b}"),
    }
}

#[test]
fn each_task_prints_the_reference_figures_and_predictions() {
    let r = reference();
    let gpt2 = fixture("gpt2");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("piqa", vec!["eval", "piqa"], "evals/piqa.jsonl"),
        ("arc_easy", vec!["eval", "arc-easy"], "evals/arc.jsonl"),
        (
            "winogrande",
            vec!["eval", "winogrande"],
            "evals/winogrande.jsonl",
        ),
        ("lambada", vec!["eval", "lambada"], "evals/lambada.jsonl"),
        ("mmlu", vec!["eval", "mmlu"], "evals/mmlu.jsonl"),
        (
            "hellaswag",
            vec!["eval", "hellaswag", "--scoring", "lm-eval"],
            "hellaswag.jsonl",
        ),
    ];
    for (task, command, data) in cases {
        let expected = &r["gpt2"]["tasks"][task];
        let preds = dir.path().join(format!("{task}.jsonl"));
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        for a in ["--model", gpt2.to_str().unwrap(), "--json", "--batch", "4"] {
            args.push(a.into());
        }
        args.extend(["--data".into(), fixture(data).display().to_string()]);
        args.extend(["--predictions".into(), preds.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = json(&args);
        assert_eq!(got["task"], task);
        assert_eq!(got["bos"], false);
        let m = &expected["metrics"];
        for key in [
            "acc",
            "acc_stderr",
            "acc_norm",
            "acc_norm_stderr",
            "acc_macro",
        ] {
            close(&got[key], &m[key], &format!("{task} {key}"));
        }
        if task == "lambada" {
            let (a, b) = (
                got["perplexity"].as_f64().unwrap(),
                m["perplexity"].as_f64().unwrap(),
            );
            assert!(((a - b) / b).abs() < 1e-3, "perplexity {a} vs {b}");
        }
        let lines = std::fs::read_to_string(&preds).unwrap();
        let docs = expected["docs"].as_array().unwrap();
        assert_eq!(lines.lines().count(), docs.len());
        for (line, doc) in lines.lines().zip(docs) {
            let p: Value = serde_json::from_str(line).unwrap();
            for key in ["index", "label", "pred", "pred_norm", "is_greedy", "tokens"] {
                assert_eq!(p[key], doc[key], "{task} doc {}: {key}", doc["index"]);
            }
        }
    }
}

#[test]
fn the_suite_runs_bundled_data_into_one_document() {
    let gpt2 = fixture("gpt2");
    let tasks = "arc-easy,winogrande,lambada,mmlu";
    let doc = json(&[
        "eval",
        "suite",
        "--model",
        gpt2.to_str().unwrap(),
        "--tasks",
        tasks,
        "--limit",
        "3",
        "--json",
    ]);
    let reports = doc["tasks"].as_array().unwrap();
    let names: Vec<&str> = reports
        .iter()
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["arc_easy", "winogrande", "lambada", "mmlu"]);
    assert!(reports.iter().all(|t| t["n"] == 3));
    // CORE subset: centred acc_norm (ARC, baseline 0.25), acc (WinoGrande 0.5, LAMBADA 0);
    // MMLU is no CORE task.
    let centred = [
        (reports[0]["acc_norm"].as_f64().unwrap() - 0.25) / 0.75,
        (reports[1]["acc"].as_f64().unwrap() - 0.5) / 0.5,
        reports[2]["acc"].as_f64().unwrap(),
    ];
    let want = centred.iter().sum::<f64>() / 3.0;
    let core = &doc["core_subset"];
    assert!((core["value"].as_f64().unwrap() - want).abs() < 1e-12);
    assert_eq!(core["tasks"].as_array().unwrap().len(), 3);
    assert!(core["note"].as_str().unwrap().contains("subset"));
}

#[test]
fn bad_requests_fail_with_a_message() {
    let gpt2 = fixture("gpt2");
    let out = cli(&[
        "eval",
        "suite",
        "--model",
        gpt2.to_str().unwrap(),
        "--tasks",
        "nope",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown task") && err.contains("piqa"),
        "{err}"
    );
    // The 64-token fixture cannot hold one of PIQA's answers: named, as lm-eval refuses it.
    let out = cli(&["eval", "piqa", "--model", gpt2.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("piqa document on line") && err.contains("window"),
        "{err}"
    );
}

#[test]
fn the_suite_runs_inside_training_with_the_figures_of_eval_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::prepare(tmp.path());
    let cfg = common::config(
        tmp.path(),
        serde_json::json!({"max_steps": 4, "checkpoint_every": 4}),
    );
    let run_dir = tmp.path().join("run");
    let stdout = common::ok(common::train_cmd(&cfg, &data, &run_dir).args([
        "--eval-suite",
        "arc-easy,lambada",
        "--eval-suite-every",
        "2",
        "--eval-suite-limit",
        "3",
    ]));
    assert!(stdout.contains("eval suite"), "{stdout}");
    let suite = common::records(&run_dir, "eval_suite");
    let steps: Vec<u64> = suite.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 4]);
    // The figures at the last step are those of `eval suite` on the trained model.
    let last = &suite[1]["values"];
    let doc = json(&[
        "eval",
        "suite",
        "--model",
        run_dir.to_str().unwrap(),
        "--tasks",
        "arc-easy,lambada",
        "--limit",
        "3",
        "--json",
    ]);
    let (arc, lambada) = (&doc["tasks"][0], &doc["tasks"][1]);
    close(&last["arc_easy/acc"], &arc["acc"], "arc_easy acc");
    close(
        &last["arc_easy/acc_norm"],
        &arc["acc_norm"],
        "arc_easy acc_norm",
    );
    close(&last["lambada/acc"], &lambada["acc"], "lambada acc");
    let (a, b) = (
        last["lambada/perplexity"].as_f64().unwrap(),
        lambada["perplexity"].as_f64().unwrap(),
    );
    assert!(((a - b) / b).abs() < 1e-6, "perplexity {a} vs {b}");
    close(
        &last["core_subset"],
        &doc["core_subset"]["value"],
        "core_subset",
    );
    let svg = std::fs::read_to_string(run_dir.join("loss.svg")).unwrap();
    assert!(
        svg.contains("CORE subset"),
        "the picture has a CORE-subset panel"
    );
    // An unknown task is refused before any training.
    let err = common::fails(
        common::train_cmd(&cfg, &data, &tmp.path().join("r2")).args(["--eval-suite", "nope"]),
    );
    assert!(err.contains("unknown task"), "{err}");
}
