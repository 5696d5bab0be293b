//! The lm-evaluation-harness tasks: each file turns one document of a Hugging Face dataset
//! (in the field layout lm-eval loads) into log-likelihood requests with lm-eval's exact
//! prompt; [`evaluate`] scores them and aggregates as lm-eval does.
//!
//! | task | lm-eval task | requests per document | metrics |
//! |---|---|---|---|
//! | `piqa` | `piqa` | 2: `Question: {goal}\nAnswer:` + ` {sol}` | acc, acc_norm |
//! | `arc_easy`, `arc_challenge` | same | 3–5: `Question: {question}\nAnswer:` + ` {choice}` | acc, acc_norm |
//! | `winogrande` | `winogrande` | 2: the option fills the blank in the context, fixed continuation | acc |
//! | `lambada` | `lambada_openai` | 1: all but the last word + ` {last word}` | acc (greedy), perplexity |
//! | `mmlu` | `mmlu` (zero-shot) | 4: description + question + lettered choices + `Answer:`, then ` A`..` D` | acc |
//! | `hellaswag` | `hellaswag` | 4: preprocessed `{activity}: {ctx}` + ` {ending}` | acc, acc_norm |

mod arc;
mod bundled;
mod core;
mod hellaswag;
mod lambada;
mod mmlu;
mod piqa;
mod score;
mod winogrande;

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::error::{ArcaneError, Result};
use crate::jsonl::{self, BadLine};

pub use bundled::bundled;
pub use core::{core_subset, CoreSubset};
pub use score::{evaluate, report, Prediction, SubjectScore, TaskReport, TaskResult};

/// A task of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// PIQA (Bisk et al. 2020), validation.
    Piqa,
    /// ARC-Easy (Clark et al. 2018), test.
    ArcEasy,
    /// ARC-Challenge, test.
    ArcChallenge,
    /// WinoGrande (Sakaguchi et al. 2020), `winogrande_xl` validation, partial scoring.
    Winogrande,
    /// LAMBADA, OpenAI's variant (Paperno et al. 2016; Radford et al. 2019), test.
    Lambada,
    /// MMLU (Hendrycks et al. 2021), test, zero-shot.
    Mmlu,
    /// HellaSwag (Zellers et al. 2019), validation, scored as lm-eval does.
    Hellaswag,
}

/// What a task's documents are scored for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pick the choice with the highest log-likelihood (`acc`), and per character
    /// (`acc_norm`) where the task reports it.
    MultipleChoice {
        /// Whether lm-eval reports `acc_norm` for the task.
        acc_norm: bool,
    },
    /// One continuation: `acc` = greedy, and perplexity.
    Loglikelihood,
}

impl Task {
    /// Every task, in the suite's order.
    pub const ALL: [Task; 7] = [
        Task::Piqa,
        Task::ArcEasy,
        Task::ArcChallenge,
        Task::Winogrande,
        Task::Hellaswag,
        Task::Lambada,
        Task::Mmlu,
    ];

    /// The name in outputs (lm-eval's, with `lambada` for `lambada_openai`).
    pub fn name(self) -> &'static str {
        match self {
            Task::Piqa => "piqa",
            Task::ArcEasy => "arc_easy",
            Task::ArcChallenge => "arc_challenge",
            Task::Winogrande => "winogrande",
            Task::Lambada => "lambada",
            Task::Mmlu => "mmlu",
            Task::Hellaswag => "hellaswag",
        }
    }

    /// A task by name (`arc-easy` and `arc_easy` alike).
    pub fn parse(name: &str) -> Result<Task> {
        let wanted = name.trim().replace('-', "_");
        Task::ALL
            .into_iter()
            .find(|t| t.name() == wanted || (wanted == "lambada_openai" && *t == Task::Lambada))
            .ok_or_else(|| {
                let names: Vec<_> = Task::ALL.iter().map(|t| t.name()).collect();
                ArcaneError::InvalidInput(format!(
                    "unknown task {name:?}: the tasks are {}",
                    names.join(", ")
                ))
            })
    }

    /// The split lm-eval scores.
    pub fn split(self) -> &'static str {
        match self {
            Task::Piqa | Task::Winogrande | Task::Hellaswag => "validation",
            _ => "test",
        }
    }

    /// How its documents are scored.
    pub fn kind(self) -> Kind {
        match self {
            Task::Lambada => Kind::Loglikelihood,
            Task::Winogrande | Task::Mmlu => Kind::MultipleChoice { acc_norm: false },
            _ => Kind::MultipleChoice { acc_norm: true },
        }
    }

    /// The accuracy of a random guess (nanochat's CORE baselines: 50 % for two choices, 25 %
    /// for four, 0 for LAMBADA; ARC has a few 3- and 5-choice questions, counted as four).
    pub fn random_baseline(self) -> f64 {
        match self {
            Task::Piqa | Task::Winogrande => 0.5,
            Task::Lambada => 0.0,
            _ => 0.25,
        }
    }

    /// One document from its JSON value; `index` is its 0-based line.
    pub fn parse_doc(self, index: usize, v: &Value) -> std::result::Result<Doc, String> {
        match self {
            Task::Piqa => piqa::doc(index, v),
            Task::ArcEasy | Task::ArcChallenge => arc::doc(index, v),
            Task::Winogrande => winogrande::doc(index, v),
            Task::Lambada => lambada::doc(index, v),
            Task::Mmlu => mmlu::doc(index, v),
            Task::Hellaswag => hellaswag::doc(index, v),
        }
    }

    /// Reads documents (JSON lines, plain or `.gz`). A bad line is an error naming it, or,
    /// with `skip_bad`, skipped and reported.
    pub fn load_docs(self, path: &Path, skip_bad: bool) -> Result<(Vec<Doc>, Vec<BadLine>)> {
        self.parse_docs(jsonl::open(path)?, path, skip_bad)
    }

    /// [`Self::load_docs`] over any reader; `source` names it in errors.
    pub fn parse_docs(
        self,
        reader: impl BufRead,
        source: &Path,
        skip_bad: bool,
    ) -> Result<(Vec<Doc>, Vec<BadLine>)> {
        let (docs, bad) =
            jsonl::parse_lines(reader, source, skip_bad, |i, v| self.parse_doc(i, v))?;
        if docs.is_empty() {
            return Err(ArcaneError::format(
                source,
                format!("holds no {} documents", self.name()),
            ));
        }
        Ok((docs, bad))
    }
}

/// One document as requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// 0-based line of the document in its file.
    pub index: usize,
    /// `(context, continuation)` per choice (one for LAMBADA).
    pub requests: Vec<(String, String)>,
    /// Length in characters (Unicode code points, Python's `len`) of each choice string,
    /// without the delimiter: `acc_norm` divides by it.
    pub choice_chars: Vec<usize>,
    /// Index of the right choice.
    pub gold: usize,
    /// The MMLU subject.
    pub subject: Option<String>,
}

/// A string field of a JSON object.
fn text<'a>(v: &'a Value, field: &str) -> std::result::Result<&'a str, String> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string field {field:?}"))
}

/// An array of strings of a JSON object.
fn texts(v: &Value, field: &str) -> std::result::Result<Vec<String>, String> {
    v.get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no array field {field:?}"))?
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("an element of {field:?} is not a string"))
}

/// A non-negative integer field, given as a number or as a string of digits (Hugging Face
/// datasets store some labels as strings).
fn index_field(v: &Value, field: &str) -> std::result::Result<usize, String> {
    let value = v.get(field).ok_or_else(|| format!("no field {field:?}"))?;
    value
        .as_u64()
        .map(|n| n as usize)
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| format!("{field:?} is not a non-negative integer"))
}

/// Multiple-choice requests `(context, " " + choice)`, lm-eval's default target delimiter.
fn choices(context: &str, choices: &[String]) -> (Vec<(String, String)>, Vec<usize>) {
    let requests = choices
        .iter()
        .map(|c| (context.to_string(), format!(" {c}")))
        .collect();
    let chars = choices.iter().map(|c| c.chars().count()).collect();
    (requests, chars)
}

/// An error when `gold` is no index of `n` choices.
fn check_gold(gold: usize, n: usize) -> std::result::Result<usize, String> {
    if gold < n {
        Ok(gold)
    } else {
        Err(format!("the answer {gold} is not one of the {n} choices"))
    }
}
