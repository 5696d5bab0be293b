//! Scoring a task's documents and aggregating as lm-eval's `process_results` and
//! `aggregation` do: per document `acc` = the choice with the highest summed log-likelihood
//! is gold, `acc_norm` = the same with each log-likelihood divided by its choice's length in
//! characters; LAMBADA's `acc` = the continuation is the greedy one, `perplexity` =
//! `exp(−mean log-likelihood)`; means with `mean_stderr`.

use std::collections::BTreeMap;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Doc, Kind, Task};
use crate::error::{ArcaneError, Result};
use crate::eval::loglik::{adds_bos, encode_pair, score_requests, Loglik, Request};
use crate::eval::metrics::{argmax, mean, mean_stderr, perplexity, pooled_stderr};
use crate::model::Gpt;
use crate::shapes::FixedShapes;
use crate::tokenizer::ModelTokenizer;

/// What was predicted for one document (`--predictions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// 0-based line of the document.
    pub index: usize,
    /// The right choice.
    pub label: usize,
    /// The choice with the highest log-likelihood.
    pub pred: usize,
    /// The choice with the highest log-likelihood per character (tasks with `acc_norm`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pred_norm: Option<usize>,
    /// Summed log-likelihood of each request.
    pub logliks: Vec<f64>,
    /// Continuation tokens of each request.
    pub tokens: Vec<usize>,
    /// Whether each request's continuation is the greedy one.
    pub is_greedy: Vec<bool>,
    /// MMLU's subject.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
}

/// One MMLU subject's accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectScore {
    /// Questions.
    pub n: usize,
    /// Accuracy.
    pub acc: f64,
    /// Its standard error.
    pub acc_stderr: f64,
}

/// A task's figures (the `--json` document).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The task's name.
    pub task: String,
    /// The split lm-eval scores (the data given may be another).
    pub split: String,
    /// Documents scored.
    pub n: usize,
    /// Accuracy (LAMBADA: every continuation token greedy; MMLU: over all questions).
    pub acc: f64,
    /// Its standard error (MMLU: pooled over subjects, lm-eval's group stderr).
    pub acc_stderr: f64,
    /// Accuracy with log-likelihoods per character of the choice.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acc_norm: Option<f64>,
    /// Its standard error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acc_norm_stderr: Option<f64>,
    /// LAMBADA: `exp(−mean summed log-likelihood)` of the last word.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub perplexity: Option<f64>,
    /// MMLU: mean of the subjects' accuracies.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acc_macro: Option<f64>,
    /// MMLU: accuracy per subject.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subjects: Option<BTreeMap<String, SubjectScore>>,
    /// Whether the tokenizer put a BOS token in front of every request.
    pub bos: bool,
}

/// A task's figures and per-document predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskResult {
    /// The figures.
    pub report: TaskReport,
    /// One per document, in order.
    pub predictions: Vec<Prediction>,
}

/// Scores `docs` of `task` with `batch` distinct model inputs per forward pass;
/// `progress(done, total)` counts requests.
pub fn evaluate<B: Backend>(
    model: &Gpt<B>,
    tokenizer: &ModelTokenizer,
    task: Task,
    docs: &[Doc],
    batch: usize,
    shapes: FixedShapes,
    mut progress: impl FnMut(usize, usize),
) -> Result<TaskResult> {
    let requests: Vec<Request> = docs
        .iter()
        .flat_map(|d| d.requests.iter())
        .map(|(context, continuation)| encode_pair(tokenizer, context, continuation))
        .collect::<Result<_>>()?;
    check_fits(task, docs, &requests, model.config().max_seq_len)?;
    let total = requests.len();
    let answers = score_requests(model, &requests, batch, shapes, |done| {
        progress(done, total)
    })?;
    let mut next = answers.into_iter();
    let predictions: Vec<Prediction> = docs
        .iter()
        .map(|d| predict(task, d, next.by_ref().take(d.requests.len()).collect()))
        .collect();
    let report = report(task, &predictions, adds_bos(tokenizer)?);
    Ok(TaskResult {
        report,
        predictions,
    })
}

/// lm-eval asserts that every continuation fits the model's window; say which does not.
fn check_fits(task: Task, docs: &[Doc], requests: &[Request], window: usize) -> Result<()> {
    let doc_of = docs
        .iter()
        .flat_map(|d| std::iter::repeat_n(d.index, d.requests.len()));
    for (r, line) in requests.iter().zip(doc_of) {
        if r.continuation.len() > window {
            return Err(ArcaneError::InvalidInput(format!(
                "{} document on line {}: its continuation is {} tokens, more than the \
                 model's {window}-token window (lm-eval refuses such \
                 requests too); use a model with a longer context or leave the task out",
                task.name(),
                line + 1,
                r.continuation.len()
            )));
        }
    }
    Ok(())
}

fn predict(task: Task, doc: &Doc, answers: Vec<Loglik>) -> Prediction {
    let logliks: Vec<f64> = answers.iter().map(|a| a.loglik).collect();
    let pred_norm = match task.kind() {
        Kind::MultipleChoice { acc_norm: true } => {
            let per_char: Vec<f64> = logliks
                .iter()
                .zip(&doc.choice_chars)
                .map(|(ll, &chars)| ll / chars as f64)
                .collect();
            Some(argmax(&per_char))
        }
        _ => None,
    };
    Prediction {
        index: doc.index,
        label: doc.gold,
        pred: argmax(&logliks),
        pred_norm,
        tokens: answers.iter().map(|a| a.tokens).collect(),
        is_greedy: answers.iter().map(|a| a.is_greedy).collect(),
        logliks,
        subject: doc.subject.clone(),
    }
}

/// The task's figures from its predictions.
pub fn report(task: Task, predictions: &[Prediction], bos: bool) -> TaskReport {
    let hits = |f: &dyn Fn(&Prediction) -> bool| -> Vec<f64> {
        predictions
            .iter()
            .map(|p| if f(p) { 1.0 } else { 0.0 })
            .collect()
    };
    let acc = match task.kind() {
        Kind::Loglikelihood => hits(&|p| p.is_greedy[0]),
        Kind::MultipleChoice { .. } => hits(&|p| p.pred == p.label),
    };
    let norm = matches!(task.kind(), Kind::MultipleChoice { acc_norm: true })
        .then(|| hits(&|p| p.pred_norm == Some(p.label)));
    let mut out = TaskReport {
        task: task.name().into(),
        split: task.split().into(),
        n: predictions.len(),
        acc: mean(&acc),
        acc_stderr: mean_stderr(&acc),
        acc_norm: norm.as_deref().map(mean),
        acc_norm_stderr: norm.as_deref().map(mean_stderr),
        perplexity: None,
        acc_macro: None,
        subjects: None,
        bos,
    };
    if task == Task::Lambada {
        let logliks: Vec<f64> = predictions.iter().map(|p| p.logliks[0]).collect();
        out.perplexity = Some(perplexity(&logliks));
    }
    if task == Task::Mmlu {
        let subjects = subjects(predictions);
        let accs: Vec<f64> = subjects.values().map(|s| s.acc).collect();
        let stderrs: Vec<f64> = subjects.values().map(|s| s.acc_stderr).collect();
        let sizes: Vec<usize> = subjects.values().map(|s| s.n).collect();
        out.acc_macro = Some(mean(&accs));
        out.acc_stderr = pooled_stderr(&stderrs, &sizes);
        out.subjects = Some(subjects);
    }
    out
}

/// MMLU's accuracy per subject.
fn subjects(predictions: &[Prediction]) -> BTreeMap<String, SubjectScore> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in predictions {
        let subject = p.subject.clone().unwrap_or_default();
        by.entry(subject)
            .or_default()
            .push(if p.pred == p.label { 1.0 } else { 0.0 });
    }
    by.into_iter()
        .map(|(s, hits)| {
            let score = SubjectScore {
                n: hits.len(),
                acc: mean(&hits),
                acc_stderr: mean_stderr(&hits),
            };
            (s, score)
        })
        .collect()
}
