//! HellaSwag (Zellers et al. 2019) scored completion-style, as build-nanogpt's `hellaswag.py`
//! and llm.c do it: the context's GPT-2 tokens followed by those of `" " + ending`, for each of
//! the four endings; the summed and the mean next-token cross-entropy over the ending's tokens
//! only; `acc` picks the lowest sum, `acc_norm` the lowest mean. Contexts that do not fit the
//! model's window are cut from the left.

use std::io::{BufRead, BufReader};
use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rows::{score_positions, Scored};
use crate::error::{ArcaneError, Result};
use crate::jsonl;
pub use crate::jsonl::BadLine;
use crate::model::Gpt;
use crate::shapes::FixedShapes;
use crate::tokenizer::ModelTokenizer;

/// One multiple-choice example.
#[derive(Clone, Debug, PartialEq)]
pub struct HellaswagExample {
    /// `ind` in the data file (or the line number when absent).
    pub ind: u64,
    /// The context (`ctx`).
    pub ctx: String,
    /// The four candidate endings.
    pub endings: [String; 4],
    /// Index of the right ending.
    pub label: usize,
}

/// Reads HellaSwag JSON lines (`ctx`, `endings`, `label`; plain or `.gz`). A bad line is an
/// error naming it, or, with `skip_bad`, skipped and reported.
pub fn load_hellaswag(
    path: &Path,
    skip_bad: bool,
) -> Result<(Vec<HellaswagExample>, Vec<BadLine>)> {
    let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    let reader: Box<dyn BufRead> = if path.to_string_lossy().ends_with(".gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    parse_hellaswag(reader, path, skip_bad)
}

/// [`load_hellaswag`] over any reader; `source` names it in errors.
pub fn parse_hellaswag(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
) -> Result<(Vec<HellaswagExample>, Vec<BadLine>)> {
    let (examples, bad) =
        jsonl::parse_lines(reader, source, skip_bad, |i, v| parse_example(v, i as u64))?;
    if examples.is_empty() {
        return Err(ArcaneError::format(source, "holds no HellaSwag examples"));
    }
    Ok((examples, bad))
}

fn parse_example(v: &Value, index: u64) -> std::result::Result<HellaswagExample, String> {
    let ctx = v
        .get("ctx")
        .and_then(Value::as_str)
        .ok_or("no string field \"ctx\"")?
        .to_string();
    // Scoring needs a context token in front of each ending.
    if ctx.trim().is_empty() {
        return Err("the context is empty".into());
    }
    let endings: Vec<String> = v
        .get("endings")
        .and_then(Value::as_array)
        .ok_or("no array field \"endings\"")?
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or("an ending is not a string")?;
    let endings: [String; 4] = endings
        .try_into()
        .map_err(|e: Vec<String>| format!("{} endings instead of 4", e.len()))?;
    let label = v
        .get("label")
        .and_then(Value::as_u64)
        .ok_or("no integer field \"label\"")?;
    if label > 3 {
        return Err(format!("label {label} is out of range 0..=3"));
    }
    let ind = v.get("ind").and_then(Value::as_u64).unwrap_or(index);
    Ok(HellaswagExample {
        ind,
        ctx,
        endings,
        label: label as usize,
    })
}

/// The scores of one example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HellaswagPrediction {
    /// `ind` of the example.
    pub ind: u64,
    /// The right ending.
    pub label: usize,
    /// The ending with the lowest summed loss.
    pub pred: usize,
    /// The ending with the lowest mean loss per token.
    pub pred_norm: usize,
    /// Summed cross-entropy of each ending's tokens.
    pub sum_losses: [f64; 4],
    /// Mean cross-entropy per token of each ending.
    pub mean_losses: [f64; 4],
}

/// Accuracy over a set of examples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HellaswagScore {
    /// Examples scored.
    pub n: usize,
    /// Accuracy by summed loss.
    pub acc: f64,
    /// Accuracy by mean loss (length-normalised).
    pub acc_norm: f64,
    /// Standard error of `acc`: sqrt(p (1 - p) / n).
    pub acc_stderr: f64,
    /// Standard error of `acc_norm`.
    pub acc_norm_stderr: f64,
}

impl HellaswagScore {
    /// Accuracies and their standard errors from predictions.
    pub fn of(predictions: &[HellaswagPrediction]) -> Self {
        let n = predictions.len();
        let rate = |hits: usize| hits as f64 / n.max(1) as f64;
        let acc = rate(predictions.iter().filter(|p| p.pred == p.label).count());
        let acc_norm = rate(
            predictions
                .iter()
                .filter(|p| p.pred_norm == p.label)
                .count(),
        );
        let stderr = |p: f64| (p * (1.0 - p) / n.max(1) as f64).sqrt();
        Self {
            n,
            acc,
            acc_norm,
            acc_stderr: stderr(acc),
            acc_norm_stderr: stderr(acc_norm),
        }
    }
}

/// One example as four token rows and the positions of each ending.
struct Rendered {
    rows: [Vec<u32>; 4],
    /// `ends[i]` = (first ending token, number of ending tokens) within `rows[i]`.
    ends: [(usize, usize); 4],
}

fn render(
    tokenizer: &ModelTokenizer,
    example: &HellaswagExample,
    window: usize,
) -> Result<Rendered> {
    let ctx = tokenizer.encode(&example.ctx)?;
    let mut rows: [Vec<u32>; 4] = Default::default();
    let mut ends = [(0, 0); 4];
    for (i, ending) in example.endings.iter().enumerate() {
        let end = tokenizer.encode(&format!(" {ending}"))?;
        let mut row: Vec<u32> = ctx.iter().chain(&end).copied().collect();
        // Cut from the left to fit the window; the first token is never scored, so at least
        // one context token stays in front of the ending.
        if row.len() > window {
            row.drain(..row.len() - window);
        }
        let n_end = end.len().min(row.len().saturating_sub(1));
        ends[i] = (row.len() - n_end, n_end);
        rows[i] = row;
    }
    Ok(Rendered { rows, ends })
}

/// Scores `examples` with `batch` examples (4·batch rows) per forward pass, with the row
/// length, row count and number of scored positions rounded by `shapes`; `progress(done)` is
/// called after each batch. Text is tokenized with GPT-2's tokenizer; see
/// [`score_hellaswag_with`] for a model with its own.
pub fn score_hellaswag<B: Backend>(
    model: &Gpt<B>,
    examples: &[HellaswagExample],
    batch: usize,
    shapes: FixedShapes,
    progress: impl FnMut(usize),
) -> Result<Vec<HellaswagPrediction>> {
    score_hellaswag_with(
        model,
        &ModelTokenizer::gpt2(),
        examples,
        batch,
        shapes,
        progress,
    )
}

/// [`score_hellaswag`] with the model's own tokenizer.
pub fn score_hellaswag_with<B: Backend>(
    model: &Gpt<B>,
    tokenizer: &ModelTokenizer,
    examples: &[HellaswagExample],
    batch: usize,
    shapes: FixedShapes,
    mut progress: impl FnMut(usize),
) -> Result<Vec<HellaswagPrediction>> {
    let window = model.config().max_seq_len;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch.max(1)) {
        let rendered: Vec<Rendered> = chunk
            .iter()
            .map(|e| render(tokenizer, e, window))
            .collect::<Result<_>>()?;
        for r in &rendered {
            for row in &r.rows {
                model.check_tokens(row)?;
            }
        }
        let t = rendered
            .iter()
            .flat_map(|r| r.rows.iter().map(Vec::len))
            .max()
            .unwrap_or(1);
        if t < 2 {
            return Err(ArcaneError::InvalidInput(format!(
                "HellaSwag example {} has no context token in front of its endings",
                chunk[0].ind
            )));
        }
        let shape = [
            4 * shapes.rows(rendered.len(), batch.max(1)),
            shapes.seq_len(t, window),
        ];
        let picked = ending_log_probs(model, &rendered, shape, shapes);
        out.extend(predictions(chunk, &rendered, &picked));
        progress(out.len());
    }
    Ok(out)
}

/// The log-probability of every ending token of `rendered` (in row order), from one forward
/// pass over a `[R, T]` batch of the rows, right-padded (see [`score_positions`]).
fn ending_log_probs<B: Backend>(
    model: &Gpt<B>,
    rendered: &[Rendered],
    shape: [usize; 2],
    shapes: FixedShapes,
) -> Vec<f32> {
    let rows: Vec<&[u32]> = rendered
        .iter()
        .flat_map(|r| r.rows.iter().map(Vec::as_slice))
        .collect();
    let mut scored = Vec::new();
    for (e, r) in rendered.iter().enumerate() {
        for i in 0..4 {
            let row = 4 * e + i;
            let (start, n) = r.ends[i];
            for p in start..start + n {
                scored.push(Scored {
                    row,
                    position: p - 1,
                    token: r.rows[i][p],
                });
            }
        }
    }
    score_positions(model, &rows, shape, &scored, shapes, false)
        .into_iter()
        .map(|s| s.log_prob)
        .collect()
}

/// Summed and mean losses of each ending, and the predictions they make.
fn predictions(
    chunk: &[HellaswagExample],
    rendered: &[Rendered],
    picked: &[f32],
) -> Vec<HellaswagPrediction> {
    let mut offset = 0;
    let argmin = |v: &[f64; 4]| {
        (0..4)
            .min_by(|&a, &b| v[a].total_cmp(&v[b]))
            .expect("four endings")
    };
    chunk
        .iter()
        .zip(rendered)
        .map(|(example, r)| {
            let mut sum_losses = [0.0; 4];
            let mut mean_losses = [0.0; 4];
            for i in 0..4 {
                let (_, n) = r.ends[i];
                let sum: f64 = picked[offset..offset + n]
                    .iter()
                    .map(|&lp| -(lp as f64))
                    .sum();
                offset += n;
                sum_losses[i] = sum;
                mean_losses[i] = sum / n.max(1) as f64;
            }
            HellaswagPrediction {
                ind: example.ind,
                label: example.label,
                pred: argmin(&sum_losses),
                pred_norm: argmin(&mean_losses),
                sum_losses,
                mean_losses,
            }
        })
        .collect()
}
