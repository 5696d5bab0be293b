//! The command line of the lm-eval-style evaluations (`eval <task>`, `eval suite`), as clap
//! types; their work is in `commands/eval_task.rs` and `commands/eval_suite.rs`.

use std::path::PathBuf;

use clap::Args;

use crate::precision_args::PrecisionArgs;

/// Flags every lm-eval-style evaluation takes.
#[derive(Debug, Args)]
pub struct EvalModelArgs {
    /// An Arcane model directory or a Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter (a fine-tune run folder) to attach to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Score only the first N documents (of each task).
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Distinct model inputs per forward pass (sorted by length, so batches pad little).
    /// 1 is fastest on the CPU; raise it on GPUs.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub batch: usize,
    /// Skip malformed lines (reported with their line numbers) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print one JSON document instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// How the weights are stored.
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// `eval <task>`
#[derive(Debug, Args)]
pub struct EvalTaskArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub common: EvalModelArgs,
    /// Documents in the Hugging Face dataset's field layout, JSON lines (plain or .gz);
    /// default: the bundled split (see datasets/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Write one JSON line per document (index, label, pred, pred_norm, logliks, tokens,
    /// is_greedy).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

/// `eval suite`
#[derive(Debug, Args)]
pub struct EvalSuiteArgs {
    /// The model and how to run it (`--limit` applies to each task).
    #[command(flatten)]
    pub common: EvalModelArgs,
    /// Tasks to run, comma-separated (piqa, arc-easy, arc-challenge, winogrande, hellaswag,
    /// lambada, mmlu); default: all, on their bundled data.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Write each task's predictions to DIR/<task>.jsonl.
    #[arg(long, value_name = "DIR")]
    pub predictions: Option<PathBuf>,
}

/// `train --eval-suite TASKS`: the lm-eval suite on the bundled data during training.
#[derive(Debug, Args)]
pub struct TrainSuiteArgs {
    /// Run these lm-eval tasks (comma-separated, or `all`) on their bundled data during
    /// training; figures in metrics.jsonl (`eval_suite` records) and the loss picture.
    #[arg(long, value_name = "TASKS")]
    pub eval_suite: Option<String>,
    /// Steps between suite evaluations (default: eval_every).
    #[arg(long, allow_negative_numbers = true, requires = "eval_suite")]
    pub eval_suite_every: Option<usize>,
    /// Documents scored per task (default: 500).
    #[arg(long, allow_negative_numbers = true, requires = "eval_suite")]
    pub eval_suite_limit: Option<usize>,
}
