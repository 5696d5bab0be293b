//! `metrics.jsonl`: one JSON object per line for every step, validation, sample and benchmark
//! of a run. The loss pictures and `arcane-cli plot` are drawn from it.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};
use crate::io::write_atomic;

/// File name of the metrics log in a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricRecord {
    /// An optimizer step.
    Train {
        /// Steps completed (1-based).
        step: usize,
        /// Tokens trained on so far.
        tokens: u64,
        /// Mean training loss of the step.
        loss: f64,
        /// Learning rate of the step.
        lr: f64,
        /// Global gradient norm before clipping.
        grad_norm: f64,
        /// Throughput of the step.
        tokens_per_s: f64,
        /// Model FLOPs utilisation, when the device's peak is known.
        mfu: Option<f64>,
        /// Seconds since the run started (resumed runs continue the count).
        elapsed_s: f64,
    },
    /// A validation loss.
    Val {
        /// Steps completed.
        step: usize,
        /// Tokens trained on so far.
        tokens: u64,
        /// Mean validation loss.
        loss: f64,
    },
    /// A generated text sample.
    Sample {
        /// Steps completed.
        step: usize,
        /// The prompt and its continuation.
        text: String,
    },
    /// HellaSwag accuracy on a subset.
    Hellaswag {
        /// Steps completed.
        step: usize,
        /// Tokens trained on so far.
        tokens: u64,
        /// Examples scored.
        n: usize,
        /// Accuracy by summed loss.
        acc: f64,
        /// Accuracy by mean loss per token.
        acc_norm: f64,
    },
    /// The lm-eval task suite: `<task>/acc`, `<task>/acc_norm`, `lambada/perplexity`,
    /// `core_subset` (see `eval::tasks::core_subset`).
    EvalSuite {
        /// Steps completed.
        step: usize,
        /// Tokens trained on so far.
        tokens: u64,
        /// Documents scored per task.
        n: usize,
        /// Metric name to value.
        values: std::collections::BTreeMap<String, f64>,
    },
    /// A step of a supervised fine-tuning run under TRL's metric names (`loss`,
    /// `mean_token_accuracy`, `entropy`, `num_tokens`, `learning_rate`, `grad_norm`).
    Sft {
        /// Steps completed (1-based).
        step: usize,
        /// Metric name to value.
        values: std::collections::BTreeMap<String, f64>,
    },
    /// A step of an alignment run (reward model, DPO, PPO, RLOO) under TRL's metric names.
    Align {
        /// `reward`, `dpo`, `ppo` or `rloo`.
        algo: String,
        /// Optimizer steps (reward model, DPO) or iterations (PPO, RLOO) completed.
        step: usize,
        /// Metric name to value (`rewards/accuracies`, `objective/kl`, ...).
        values: std::collections::BTreeMap<String, f64>,
    },
}

impl MetricRecord {
    /// The step the record belongs to.
    pub fn step(&self) -> usize {
        match self {
            Self::Train { step, .. }
            | Self::Val { step, .. }
            | Self::Sample { step, .. }
            | Self::Hellaswag { step, .. }
            | Self::EvalSuite { step, .. }
            | Self::Sft { step, .. }
            | Self::Align { step, .. } => *step,
        }
    }
}

/// Appends records to a run's `metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// The log of `run_dir`. With `resume_step`, records after that step (written by the
    /// interrupted run after its last checkpoint) are dropped, so the log matches the resumed run.
    pub fn open(run_dir: &Path, resume_step: Option<usize>) -> Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        match resume_step {
            Some(step) if path.exists() => {
                let kept: Vec<MetricRecord> = read_metrics(&path)?
                    .into_iter()
                    .filter(|r| r.step() <= step)
                    .collect();
                let mut text = String::new();
                for record in &kept {
                    text.push_str(&serde_json::to_string(record).expect("record serializes"));
                    text.push('\n');
                }
                write_atomic(&path, text.as_bytes())?;
            }
            Some(_) => {}
            None => {
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|e| ArcaneError::io(&path, e))?;
                }
            }
        }
        Ok(Self { path })
    }

    /// Appends one record (flushed at once, so a killed run keeps what it logged).
    pub fn append(&self, record: &MetricRecord) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ArcaneError::io(&self.path, e))?;
        let line = serde_json::to_string(record).expect("record serializes");
        writeln!(file, "{line}").map_err(|e| ArcaneError::io(&self.path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a `metrics.jsonl` (a torn last line from a killed run is skipped).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRecord>> {
    let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| ArcaneError::io(path, e))?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => out.push(record),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(ArcaneError::format(
                    path,
                    format!("line {} is not a metrics record: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}
