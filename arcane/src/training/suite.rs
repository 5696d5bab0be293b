//! The lm-eval task suite during training: the bundled documents are read once, before the
//! run, and scored every `eval_suite.every` steps; the figures go to `metrics.jsonl` as
//! `eval_suite` records and into the loss picture.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::prelude::*;

use super::components::SuiteHook;
use super::config::EvalSuiteEval;
use crate::error::Result;
use crate::eval::tasks::{core_subset, evaluate, Doc, Task};
use crate::shapes::FixedShapes;
use crate::tokenizer::ModelTokenizer;

/// The tasks of `e` with their first `e.limit` bundled documents.
fn documents(e: &EvalSuiteEval) -> Result<Vec<(Task, Vec<Doc>)>> {
    let tasks = if e.tasks.is_empty() {
        Task::ALL.to_vec()
    } else {
        e.tasks
            .iter()
            .map(|t| Task::parse(t))
            .collect::<Result<_>>()?
    };
    tasks
        .into_iter()
        .map(|task| {
            let (mut docs, _) = task.bundled_docs(false)?;
            docs.truncate(e.limit.unwrap_or(usize::MAX));
            Ok((task, docs))
        })
        .collect()
}

/// The suite as a hook: every `e.every` steps, `<task>/acc`, `<task>/acc_norm`,
/// `lambada/perplexity` and `core_subset`.
pub(crate) fn suite_hook<B: Backend>(
    e: &EvalSuiteEval,
    tokenizer: &ModelTokenizer,
    shapes: FixedShapes,
) -> Result<SuiteHook<B>> {
    let docs = documents(e)?;
    let (every, batch, tokenizer) = (e.every, e.batch, tokenizer.clone());
    let n = docs.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    Ok(Arc::new(move |model, step| {
        if step % every != 0 {
            return Ok(None);
        }
        let mut values = BTreeMap::new();
        let mut reports = Vec::new();
        for (task, docs) in &docs {
            let r = evaluate(model, &tokenizer, *task, docs, batch, shapes, |_, _| {})?.report;
            values.insert(format!("{}/acc", r.task), r.acc);
            if let Some(a) = r.acc_norm {
                values.insert(format!("{}/acc_norm", r.task), a);
            }
            if let Some(p) = r.perplexity {
                values.insert(format!("{}/perplexity", r.task), p);
            }
            reports.push(r);
        }
        if let Some(core) = core_subset(&reports) {
            values.insert("core_subset".into(), core.value);
        }
        Ok(Some((n, values)))
    }))
}
