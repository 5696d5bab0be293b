//! `arcane-cli eval piqa|arc-easy|arc-challenge|winogrande|lambada|mmlu`: one lm-eval task,
//! scored and aggregated as lm-evaluation-harness does, on the bundled data or `--data`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arcane::eval::tasks::{evaluate, Doc, Task, TaskReport, TaskResult};
use arcane::shapes::FixedShapes;
use arcane::{Gpt, ModelTokenizer};
use burn::prelude::*;

use crate::backend::{self, BackendKind};
use crate::cli_eval::{EvalModelArgs, EvalTaskArgs};
use crate::model_arg::{load_model, load_tokenizer};
use crate::precision_args::InferencePrecision;
use crate::progress;

/// Reads the documents, scores them on the chosen backend and prints the figures.
pub fn run(task: Task, args: EvalTaskArgs, backend: BackendKind) -> Result<()> {
    let docs = load_docs(task, args.data.as_deref(), &args.common)?;
    let common = &args.common;
    let result = backend::run(
        backend,
        Scoring {
            model: common.model.clone(),
            adapter: common.adapter.clone(),
            tasks: vec![(task, docs)],
            batch: common.batch,
            shapes: backend.shapes(),
            precision: common.precision.resolve(backend)?,
        },
    )?
    .0
    .remove(0);
    if let Some(path) = &args.predictions {
        write_predictions(&result, path)?;
    }
    if common.json {
        println!("{}", serde_json::to_string(&result.report)?);
    } else {
        println!("{}", summary(&result.report));
    }
    Ok(())
}

/// The documents of `task` from `data` or the bundled file, cut to `--limit`; bad lines are
/// reported on stderr.
pub fn load_docs(task: Task, data: Option<&Path>, common: &EvalModelArgs) -> Result<Vec<Doc>> {
    let (mut docs, bad, source) = match data {
        Some(path) => {
            let (docs, bad) = task.load_docs(path, common.skip_bad)?;
            (docs, bad, path.display().to_string())
        }
        None => {
            let (docs, bad) = task.bundled_docs(common.skip_bad)?;
            (docs, bad, arcane::eval::tasks::bundled(task).0.to_string())
        }
    };
    for b in &bad {
        eprintln!("skipped line {}: {}", b.line, b.reason);
    }
    if !bad.is_empty() {
        eprintln!("skipped {} bad line(s) of {source}", bad.len());
    }
    if let Some(limit) = common.limit {
        docs.truncate(limit);
    }
    if docs.is_empty() {
        anyhow::bail!(
            "no {} documents to score: --limit must be at least 1",
            task.name()
        );
    }
    Ok(docs)
}

/// Scores tasks one after the other with one model.
pub struct Scoring {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub tasks: Vec<(Task, Vec<Doc>)>,
    pub batch: usize,
    pub shapes: FixedShapes,
    pub precision: InferencePrecision,
}

impl backend::Task for Scoring {
    /// The results, and the seconds spent scoring (the model loaded).
    type Output = (Vec<TaskResult>, f64);

    fn run<B: Backend>(self, device: B::Device) -> Result<(Vec<TaskResult>, f64)> {
        let tokenizer = load_tokenizer(&self.model)?;
        let model = load_model::<B>(&self.model, self.adapter.as_deref(), &device)?;
        let model = self.precision.apply(model);
        let start = std::time::Instant::now();
        let results = self
            .tasks
            .iter()
            .map(|(task, docs)| score_one(&model, &tokenizer, *task, docs, self.batch, self.shapes))
            .collect::<Result<_>>()?;
        Ok((results, start.elapsed().as_secs_f64()))
    }
}

fn score_one<B: Backend>(
    model: &Gpt<B>,
    tokenizer: &ModelTokenizer,
    task: Task,
    docs: &[Doc],
    batch: usize,
    shapes: FixedShapes,
) -> Result<TaskResult> {
    let requests: usize = docs.iter().map(|d| d.requests.len()).sum();
    let bar = progress::bar(requests as u64, task.name());
    let result = evaluate(model, tokenizer, task, docs, batch, shapes, |done, _| {
        bar.set_position(done as u64)
    })
    .with_context(|| format!("scoring {}", task.name()))?;
    bar.finish_and_clear();
    Ok(result)
}

/// One JSON line per document.
pub fn write_predictions(result: &TaskResult, path: &Path) -> Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for p in &result.predictions {
        writeln!(file, "{}", serde_json::to_string(p)?)?;
    }
    file.flush()?;
    Ok(())
}

/// One line for people.
pub fn summary(r: &TaskReport) -> String {
    let mut line = format!(
        "{} ({}) n={}: acc {:.4} ± {:.4}",
        r.task, r.split, r.n, r.acc, r.acc_stderr
    );
    if let (Some(a), Some(s)) = (r.acc_norm, r.acc_norm_stderr) {
        line.push_str(&format!(", acc_norm {a:.4} ± {s:.4}"));
    }
    if let Some(p) = r.perplexity {
        line.push_str(&format!(", perplexity {p:.3}"));
    }
    if let Some(m) = r.acc_macro {
        line.push_str(&format!(
            ", macro acc {m:.4} over {} subjects",
            r.subjects.as_ref().map_or(0, |s| s.len())
        ));
    }
    line
}
