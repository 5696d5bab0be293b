//! `arcane-cli eval hellaswag`: HellaSwag accuracy with standard errors, optionally per example.

use std::io::Write;

use anyhow::{Context, Result};
use arcane::eval::tasks::Task as EvalTask;
use arcane::eval::{load_hellaswag, score_hellaswag_with, HellaswagExample, HellaswagScore};
use burn::prelude::*;
use serde_json::json;

use crate::backend::{self, BackendKind, Task};
use crate::cli::{EvalHellaswagArgs, HellaswagScoring};
use crate::cli_eval::{EvalModelArgs, EvalTaskArgs};
use crate::model_arg::{load_model, load_tokenizer};
use crate::precision_args::InferencePrecision;
use crate::progress;

/// Reads the examples, then scores them on the chosen backend.
pub fn run(args: EvalHellaswagArgs, backend: BackendKind) -> Result<()> {
    if args.scoring == HellaswagScoring::LmEval {
        return super::eval_task::run(EvalTask::Hellaswag, lm_eval_args(args), backend);
    }
    let (mut examples, bad) = load_hellaswag(&args.data, args.skip_bad)?;
    for b in &bad {
        eprintln!("skipped line {}: {}", b.line, b.reason);
    }
    if !bad.is_empty() {
        eprintln!(
            "skipped {} bad line(s) of {}",
            bad.len(),
            args.data.display()
        );
    }
    if let Some(limit) = args.limit {
        examples.truncate(limit);
    }
    let precision = args.precision.resolve(backend)?;
    backend::run(
        backend,
        EvalHellaswag {
            precision,
            args,
            examples,
            shapes: backend.shapes(),
        },
    )
}

struct EvalHellaswag {
    precision: InferencePrecision,
    shapes: arcane::shapes::FixedShapes,
    args: EvalHellaswagArgs,
    examples: Vec<HellaswagExample>,
}

impl Task for EvalHellaswag {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let tokenizer = load_tokenizer(&self.args.model)?;
        let model = load_model::<B>(&self.args.model, self.args.adapter.as_deref(), &device)?;
        let model = self.precision.apply(model);
        let bar = progress::bar(self.examples.len() as u64, "examples");
        let start = std::time::Instant::now();
        let predictions = score_hellaswag_with(
            &model,
            &tokenizer,
            &self.examples,
            self.args.batch,
            self.shapes,
            |done| bar.set_position(done as u64),
        )
        .context("scoring HellaSwag")?;
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        if let Some(path) = &self.args.predictions {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            for p in &predictions {
                writeln!(file, "{}", serde_json::to_string(p)?)?;
            }
            file.flush()?;
        }
        let s = HellaswagScore::of(&predictions);
        // The library encodes contexts and endings without special tokens (as the reference
        // scores do); the tokenizer's own rule is named beside it.
        let special_tokens = format!(
            "none added (plain text; the tokenizer {})",
            tokenizer.special_tokens_policy()
        );
        if self.args.json {
            println!(
                "{}",
                json!({"n": s.n, "acc": s.acc, "acc_norm": s.acc_norm, "acc_stderr": s.acc_stderr, "acc_norm_stderr": s.acc_norm_stderr,
                       "special_tokens": special_tokens})
            );
        } else {
            println!(
                "HellaSwag n={}: acc {:.4} ± {:.4}, acc_norm {:.4} ± {:.4} ({:.1} examples/s; special tokens: {special_tokens})",
                s.n,
                s.acc,
                s.acc_stderr,
                s.acc_norm,
                s.acc_norm_stderr,
                s.n as f64 / seconds
            );
        }
        Ok(())
    }
}

/// `eval hellaswag --scoring lm-eval` as `eval <task>` arguments.
fn lm_eval_args(args: EvalHellaswagArgs) -> EvalTaskArgs {
    EvalTaskArgs {
        common: EvalModelArgs {
            model: args.model,
            adapter: args.adapter,
            limit: args.limit,
            batch: args.batch,
            skip_bad: args.skip_bad,
            json: args.json,
            precision: args.precision,
        },
        data: Some(args.data),
        predictions: args.predictions,
    }
}
