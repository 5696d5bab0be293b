//! The lm-eval tasks against `scripts/eval_reference.py` (PyTorch/transformers following
//! lm-evaluation-harness's code), whose outputs are committed in
//! `fixtures/eval_reference.json`: per document the log-likelihoods (within 1e-4 per token), greedy
//! flags, token counts and predictions, and the task metrics, on the tiny GPT-2 fixture (no
//! BOS, 64-token window: LAMBADA, MMLU and one HellaSwag document are cut from the left) and
//! the Llama fixture (its tokenizer adds `<s>`), batched and padded several ways.

mod common;

use arcane::eval::tasks::{evaluate, Task, TaskReport};
use arcane::eval::{encode_pair, Request};
use arcane::shapes::FixedShapes;
use arcane::{load_model, load_tokenizer, Gpt, ModelTokenizer};
use common::{fixture, tol, TestBackend};
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("eval_reference.json")).expect("reference");
    serde_json::from_str(&text).expect("reference JSON")
}

fn docs_file(task: Task) -> &'static str {
    match task {
        Task::Piqa => "evals/piqa.jsonl",
        Task::ArcEasy | Task::ArcChallenge => "evals/arc.jsonl",
        Task::Winogrande => "evals/winogrande.jsonl",
        Task::Lambada => "evals/lambada.jsonl",
        Task::Mmlu => "evals/mmlu.jsonl",
        Task::Hellaswag => "hellaswag.jsonl",
    }
}

/// Equal to 1e-12, or both missing (the reference writes `null` for a NaN stderr).
fn same(ours: Option<f64>, theirs: &Value, what: &str) {
    match (ours.filter(|v| !v.is_nan()), theirs.as_f64()) {
        (None, None) => {}
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}"),
        (a, b) => panic!("{what}: {a:?} vs {b:?}"),
    }
}

fn check_metrics(r: &TaskReport, m: &Value) {
    let what = |k: &str| format!("{} {k}", r.task);
    same(Some(r.acc), &m["acc"], &what("acc"));
    same(Some(r.acc_stderr), &m["acc_stderr"], &what("acc_stderr"));
    same(r.acc_norm, &m["acc_norm"], &what("acc_norm"));
    same(
        r.acc_norm_stderr,
        &m["acc_norm_stderr"],
        &what("acc_norm_stderr"),
    );
    same(r.acc_macro, &m["acc_macro"], &what("acc_macro"));
    match (r.perplexity, m["perplexity"].as_f64()) {
        // exp(−mean): a 1e-4 error in a log-likelihood is a 1e-4 relative error here.
        (Some(a), Some(b)) => assert!(((a - b) / b).abs() < 1e-3, "perplexity {a} vs {b}"),
        (None, None) => {}
        other => panic!("perplexity: {other:?}"),
    }
    if let Some(subjects) = &r.subjects {
        let theirs = m["subjects"].as_object().expect("subjects");
        assert_eq!(subjects.len(), theirs.len());
        for (name, s) in subjects {
            same(Some(s.acc), &theirs[name]["acc"], name);
            assert_eq!(s.n as u64, theirs[name]["n"].as_u64().unwrap());
        }
    }
}

fn check_task(
    model: &Gpt<TestBackend>,
    tokenizer: &ModelTokenizer,
    task: Task,
    expected: &Value,
    bos: bool,
) {
    let (docs, bad) = task.load_docs(&fixture(docs_file(task)), false).unwrap();
    assert!(bad.is_empty());
    let want = expected["docs"].as_array().unwrap();
    assert_eq!(docs.len(), want.len(), "{task:?}");
    let shapes = [FixedShapes::EXACT, FixedShapes::BUCKETED];
    for (batch, shapes) in [1, 3, 16].into_iter().flat_map(|b| shapes.map(|s| (b, s))) {
        let result = evaluate(model, tokenizer, task, &docs, batch, shapes, |_, _| {}).unwrap();
        assert_eq!(result.report.bos, bos);
        assert_eq!(result.report.n, docs.len());
        for (p, e) in result.predictions.iter().zip(want) {
            let at = format!("{task:?} doc {} (batch {batch}, {shapes:?})", p.index);
            assert_eq!(p.index as u64, e["index"].as_u64().unwrap(), "{at}");
            assert_eq!(p.label as u64, e["label"].as_u64().unwrap(), "{at}");
            let tokens: Vec<usize> = serde_json::from_value(e["tokens"].clone()).unwrap();
            assert_eq!(p.tokens, tokens, "{at}: continuation tokens");
            let theirs: Vec<f64> = serde_json::from_value(e["logliks"].clone()).unwrap();
            // 1e-4 per scored token: each token's log-softmax over the 50257 logits carries
            // its own f32 rounding (~1e-5 at these untrained models' |log p| ~ 20).
            for ((a, b), n) in p.logliks.iter().zip(&theirs).zip(&tokens) {
                let within = tol(1e-4) as f64 * *n as f64;
                assert!((a - b).abs() < within, "{at}: loglik {a} vs {b}");
            }
            let greedy: Vec<bool> = serde_json::from_value(e["is_greedy"].clone()).unwrap();
            assert_eq!(p.is_greedy, greedy, "{at}: is_greedy");
            assert_eq!(p.pred as u64, e["pred"].as_u64().unwrap(), "{at}: pred");
            assert_eq!(
                p.pred_norm.map(|n| n as u64),
                e["pred_norm"].as_u64(),
                "{at}: pred_norm"
            );
        }
        check_metrics(&result.report, &expected["metrics"]);
    }
}

fn check_model(name: &str) {
    let reference = reference();
    let expected = &reference[name];
    let dir = fixture(name);
    let model = load_model::<TestBackend>(&dir, &Default::default()).unwrap();
    let tokenizer = load_tokenizer(&dir).unwrap();
    let bos = expected["bos"].as_bool().unwrap();
    let tasks = expected["tasks"].as_object().unwrap();
    assert!(!tasks.is_empty());
    for (task, want) in tasks {
        check_task(&model, &tokenizer, Task::parse(task).unwrap(), want, bos);
    }
}

#[test]
fn gpt2_scores_every_task_as_lm_eval() {
    check_model("gpt2");
}

#[test]
fn llama_with_bos_scores_as_lm_eval() {
    check_model("llama");
}

#[test]
fn trailing_context_whitespace_moves_to_the_continuation() {
    let gpt2 = ModelTokenizer::gpt2();
    let Request {
        context,
        continuation,
    } = encode_pair(&gpt2, "the grey ", " sea").unwrap();
    assert_eq!(context, gpt2.encode("the grey").unwrap());
    let whole = gpt2.encode("the grey  sea").unwrap();
    assert_eq!(continuation, whole[context.len()..].to_vec());
    // Split at the context's own length, not re-encoded separately.
    assert_eq!([context, continuation].concat(), whole);
}

#[test]
fn acc_norm_divides_by_characters_not_bytes() {
    let line = r#"{"goal": "g", "sol1": "café — crème", "sol2": "ok", "label": 0}"#;
    let (docs, _) = Task::Piqa
        .parse_docs(line.as_bytes(), "inline".as_ref(), false)
        .unwrap();
    // 12 code points (Python's len), 15 UTF-8 bytes.
    assert_eq!(docs[0].choice_chars, vec![12, 2]);
    assert_eq!(docs[0].requests[0].1, " café — crème");
}

#[test]
fn arc_labels_may_be_digits() {
    let line = r#"{"question": "q", "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]}, "answerKey": "3"}"#;
    let (docs, _) = Task::ArcEasy
        .parse_docs(line.as_bytes(), "inline".as_ref(), false)
        .unwrap();
    assert_eq!(docs[0].gold, 2);
    let bad = r#"{"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "B"}"#;
    let err = Task::ArcEasy
        .parse_docs(bad.as_bytes(), "inline".as_ref(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1") && err.contains("answerKey"), "{err}");
}
