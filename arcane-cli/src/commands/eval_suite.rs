//! `arcane-cli eval suite`: every lm-eval task (or `--tasks`) with one model in one run, a
//! table on the terminal and one JSON document, with a CORE-subset average.

use anyhow::{Context, Result};
use arcane::eval::tasks::{core_subset, CoreSubset, Task, TaskReport};
use serde_json::json;

use super::eval_task::{load_docs, write_predictions, Scoring};
use crate::backend::{self, BackendKind};
use crate::cli_eval::EvalSuiteArgs;

/// Runs the tasks and prints the table (stderr with --json) and the JSON document.
pub fn run(args: EvalSuiteArgs, backend: BackendKind) -> Result<()> {
    let tasks = match &args.tasks {
        None => Task::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| Task::parse(n))
            .collect::<arcane::Result<Vec<_>>>()?,
    };
    let common = &args.common;
    let docs = tasks
        .iter()
        .map(|&t| Ok((t, load_docs(t, None, common)?)))
        .collect::<Result<Vec<_>>>()?;
    let (results, seconds) = backend::run(
        backend,
        Scoring {
            model: common.model.clone(),
            adapter: common.adapter.clone(),
            tasks: docs,
            batch: common.batch,
            shapes: backend.shapes(),
            precision: common.precision.resolve(backend)?,
        },
    )?;
    if let Some(dir) = &args.predictions {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for r in &results {
            write_predictions(r, &dir.join(format!("{}.jsonl", r.report.task)))?;
        }
    }
    let reports: Vec<TaskReport> = results.into_iter().map(|r| r.report).collect();
    let core = core_subset(&reports);
    let table = table(&reports, core.as_ref(), seconds);
    if common.json {
        eprint!("{table}");
        let doc = json!({
            "model": common.model.display().to_string(),
            "tasks": reports,
            "core_subset": core,
            "seconds": seconds,
        });
        println!("{doc}");
    } else {
        print!("{table}");
    }
    Ok(())
}

/// The terminal table: one row per task, then the CORE subset.
fn table(reports: &[TaskReport], core: Option<&CoreSubset>, seconds: f64) -> String {
    let mut out = format!(
        "{:<14} {:<10} {:>6}  {:>17}  {:>17}  {}\n",
        "task", "split", "n", "acc", "acc_norm (chars)", "other"
    );
    let pm = |v: f64, s: f64| format!("{v:.4} ± {s:.4}");
    for r in reports {
        let norm = match (r.acc_norm, r.acc_norm_stderr) {
            (Some(a), Some(s)) => pm(a, s),
            _ => "—".into(),
        };
        let other = match (r.perplexity, r.acc_macro) {
            (Some(p), _) => format!("perplexity {p:.3}"),
            (_, Some(m)) => format!("macro acc {m:.4}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<14} {:<10} {:>6}  {:>17}  {:>17}  {}\n",
            r.task,
            r.split,
            r.n,
            pm(r.acc, r.acc_stderr),
            norm,
            other
        ));
    }
    if let Some(c) = core {
        out.push_str(&format!("CORE subset {:.4} ({})\n", c.value, c.note));
    }
    out.push_str(&format!("{seconds:.1} s scoring\n"));
    out
}
