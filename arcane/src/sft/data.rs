//! Supervised fine-tuning rows in TRL's four dataset formats, read from JSONL with line
//! numbers (`trl/docs/source/dataset_formats.md`):
//!
//! - language modeling: `{"text": "The sky is blue."}`;
//! - prompt/completion: `{"prompt": "The sky is", "completion": " blue."}`;
//! - conversational language modeling: `{"messages": [{"role": "user", "content": "..."}, ...]}`;
//! - conversational prompt/completion: `{"prompt": [messages], "completion": [messages]}`.
//!
//! The format is that of the first good row; a file that mixes formats is refused at the first
//! row of another one (TRL decides per dataset, not per row). Keys beyond these are ignored.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use crate::chat::{messages_of, Message};
use crate::error::{ArcaneError, Result};
use crate::jsonl::{self, BadLine};

/// Which of TRL's formats a file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SftFormat {
    /// `{"text"}`: loss on every token.
    Text,
    /// `{"prompt", "completion"}` strings: loss on the completion.
    PromptCompletion,
    /// `{"messages"}`: loss on the assistant turns.
    Messages,
    /// `{"prompt", "completion"}` message lists: loss on the completion's turns.
    ChatPromptCompletion,
}

impl SftFormat {
    /// Whether rows of this format go through a chat template.
    pub fn is_conversational(self) -> bool {
        matches!(self, Self::Messages | Self::ChatPromptCompletion)
    }

    /// How the format is written, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Text => r#"language modeling {"text"}"#,
            Self::PromptCompletion => r#"prompt/completion {"prompt", "completion"} (strings)"#,
            Self::Messages => r#"conversational {"messages": [{"role", "content"}, ...]}"#,
            Self::ChatPromptCompletion => {
                r#"conversational prompt/completion {"prompt": [messages], "completion": [messages]}"#
            }
        }
    }
}

/// One training example as the file gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SftRow {
    /// A whole text.
    Text(String),
    /// A prompt and the completion that carries the loss.
    PromptCompletion {
        /// The opening.
        prompt: String,
        /// The continuation to learn.
        completion: String,
    },
    /// A conversation; the assistant turns carry the loss.
    Messages(Vec<Message>),
    /// A conversation's opening and the turns to learn.
    ChatPromptCompletion {
        /// The opening messages.
        prompt: Vec<Message>,
        /// The turns to learn (usually one assistant message).
        completion: Vec<Message>,
    },
}

impl SftRow {
    /// The format of this row.
    pub fn format(&self) -> SftFormat {
        match self {
            Self::Text(_) => SftFormat::Text,
            Self::PromptCompletion { .. } => SftFormat::PromptCompletion,
            Self::Messages(_) => SftFormat::Messages,
            Self::ChatPromptCompletion { .. } => SftFormat::ChatPromptCompletion,
        }
    }

    /// Parses one JSON row.
    pub fn parse(value: &Value) -> std::result::Result<Self, String> {
        let object = value
            .as_object()
            .ok_or("expected a JSON object in one of TRL's SFT formats")?;
        if let Some(text) = object.get("text") {
            let text = text.as_str().ok_or(r#""text" must be a string"#)?;
            return Ok(Self::Text(text.to_string()));
        }
        if let Some(messages) = object.get("messages") {
            return Ok(Self::Messages(messages_of(messages, "messages")?));
        }
        match (object.get("prompt"), object.get("completion")) {
            (Some(Value::String(p)), Some(Value::String(c))) => Ok(Self::PromptCompletion {
                prompt: p.clone(),
                completion: c.clone(),
            }),
            (Some(p @ Value::Array(_)), Some(c @ Value::Array(_))) => {
                let completion = messages_of(c, "completion")?;
                if completion.is_empty() {
                    return Err(r#""completion" holds no message"#.into());
                }
                Ok(Self::ChatPromptCompletion {
                    prompt: messages_of(p, "prompt")?,
                    completion,
                })
            }
            (Some(_), Some(_)) => Err(
                r#""prompt" and "completion" must both be strings or both be lists of messages"#
                    .into(),
            ),
            _ => Err(
                r#"no SFT fields: expected {"text"}, {"prompt", "completion"} or {"messages"}"#
                    .into(),
            ),
        }
    }
}

/// The rows of an SFT file, their 1-based line numbers and format, and the lines skipped.
#[derive(Clone, Debug)]
pub struct SftRows {
    /// The rows in file order.
    pub rows: Vec<SftRow>,
    /// The line of each row.
    pub lines: Vec<usize>,
    /// The file's format.
    pub format: SftFormat,
    /// Lines skipped under `skip_bad`.
    pub bad: Vec<BadLine>,
}

/// Reads an SFT JSONL file (`.gz` too). A bad line, or a line in another format than the
/// first good one, is an error naming it; with `skip_bad` it is skipped and reported.
pub fn read_sft_rows(path: &Path, skip_bad: bool) -> Result<SftRows> {
    let reader = open(path)?;
    let first = std::cell::Cell::new(None::<SftFormat>);
    let (items, bad) = jsonl::parse_lines(reader, path, skip_bad, |i, v| {
        let row = SftRow::parse(v)?;
        match first.get() {
            None => first.set(Some(row.format())),
            Some(f) if f != row.format() => {
                return Err(format!(
                    "a {} row in a file of {} rows; one file holds one format",
                    row.format().describe(),
                    f.describe()
                ))
            }
            Some(_) => {}
        }
        Ok((i + 1, row))
    })?;
    let format = first.get().ok_or_else(|| {
        ArcaneError::format(
            path,
            r#"holds no SFT row; write one JSON object a line: {"text"}, {"prompt", "completion"} or {"messages"}"#,
        )
    })?;
    let (lines, rows) = items.into_iter().unzip();
    Ok(SftRows {
        rows,
        lines,
        format,
        bad,
    })
}

/// The file, gunzipped when its name ends in `.gz`.
fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    Ok(if path.to_string_lossy().ends_with(".gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}
