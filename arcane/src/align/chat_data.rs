//! Conversational alignment data in TRL's formats, rendered with a model's chat template as
//! TRL renders it (`trl/data_utils.py`, `apply_chat_template`):
//!
//! - preference pairs `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`
//!   (`margin` optional), or with an implicit prompt, `{"chosen": [conversation], "rejected":
//!   [conversation]}`: the prompt is then the messages both conversations open with (TRL's
//!   `extract_prompt`);
//! - prompts `{"prompt": [messages]}`.
//!
//! The prompt is the template's rendering of its messages with the generation prompt
//! (`add_generation_prompt=True`); a completion is the rendering of prompt and completion
//! together minus that prompt text, which must be its start (a template that re-renders the
//! opening once a reply follows is refused, as no reply can be cut out of it). Both are
//! encoded without adding special tokens (the template writes them); a BOS the template
//! writes is taken off the prompt, since every alignment sequence opens with the model's own
//! ([`bos_of`](super::bos_of)).
//!
//! A completion ends with its first end-of-turn token ([`ChatFormat::stop_ids`]: what the
//! template closes a turn with, or EOS): what a template writes after it (ChatML's newline)
//! belongs to the next turn, and a policy's samples stop there too, so a reward model learns
//! replies exactly as PPO and RLOO show it the policy's (TRL keeps that newline in DPO and
//! reward pairs, and scores PPO samples without it).

use std::cell::Cell;
use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use super::data::{
    open, parse_lines, parse_pair, text_field, PreferencePair, PromptRecord, TokenPair,
};
use crate::chat::{
    messages_of, model_template, stop_ids, ChatTemplate, Conversation, Message, RenderOptions,
};
use crate::error::{ArcaneError, Result};
use crate::jsonl::BadLine;
use crate::tokenizer::ModelTokenizer;

/// A conversational preference: `chosen` is preferred to `rejected` as the reply to `prompt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatPair {
    /// The conversation so far (at least one message).
    pub prompt: Vec<Message>,
    /// The preferred reply (usually one assistant message).
    pub chosen: Vec<Message>,
    /// The other reply.
    pub rejected: Vec<Message>,
}

/// Preference pairs of one file: plain text or conversations (one file holds one format).
#[derive(Clone, Debug, PartialEq)]
pub enum PairRows {
    /// `{"prompt": "...", "chosen": "...", "rejected": "..."}` rows.
    Text(Vec<PreferencePair>),
    /// Conversational rows, with each row's margin (None when the file gives none).
    Chat(Vec<(ChatPair, Option<f64>)>),
}

/// Prompts of one file: plain text or conversations.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptRows {
    /// `{"prompt": "..."}` rows.
    Text(Vec<PromptRecord>),
    /// `{"prompt": [messages]}` rows.
    Chat(Vec<Vec<Message>>),
}

impl PairRows {
    /// Pairs in all.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(p) => p.len(),
            Self::Chat(p) => p.len(),
        }
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PromptRows {
    /// Prompts in all.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(p) => p.len(),
            Self::Chat(p) => p.len(),
        }
    }

    /// True when there is no prompt.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the alignment commands render conversations for one model: its tokenizer, its chat
/// template, and the tokens that end a turn.
#[derive(Clone, Debug)]
pub struct ChatFormat {
    tokenizer: ModelTokenizer,
    template: ChatTemplate,
    stop: Vec<u32>,
}

impl ChatFormat {
    /// Renders with `template` and `tokenizer`; a turn ends at the template's end-of-turn
    /// tokens, the tokenizer's EOS and the `eos_token_id`s of `model_dir`
    /// ([`crate::chat::stop_ids`]).
    pub fn new(
        tokenizer: ModelTokenizer,
        template: ChatTemplate,
        model_dir: Option<&Path>,
    ) -> Self {
        let stop = stop_ids(&template, &tokenizer, model_dir);
        Self {
            tokenizer,
            template,
            stop,
        }
    }

    /// The format of the model in `dir` read with `tokenizer`: its chat template (a
    /// `chat_template.jinja`, `tokenizer_config.json`'s, or Arcane's ChatML for a tokenizer
    /// with ChatML's tokens, as `lora merge` of a ChatML SFT run writes); None without one.
    pub fn from_model_dir(dir: &Path, tokenizer: &ModelTokenizer) -> Result<Option<Self>> {
        Ok(model_template(dir, tokenizer)?.map(|t| Self::new(tokenizer.clone(), t, Some(dir))))
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ModelTokenizer {
        &self.tokenizer
    }

    /// The template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The template's text (what a reward model records, to check a policy against).
    pub fn template_source(&self) -> Result<&str> {
        self.template.source(&RenderOptions::default())
    }

    /// The ids that end a turn (sorted).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    fn render(&self, messages: &[Message], generation: bool) -> Result<String> {
        let options = RenderOptions {
            add_generation_prompt: generation,
            ..Default::default()
        };
        self.template
            .render(&Conversation::from_messages(messages), &options)
    }

    /// The ids of `prompt` rendered with the generation prompt, without a leading BOS.
    pub fn prompt_ids(&self, prompt: &[Message]) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(ArcaneError::InvalidInput(
                "the prompt holds no message; give at least the user's".into(),
            ));
        }
        let mut ids = self.tokenizer.encode_chat(&self.render(prompt, true)?)?;
        if self.tokenizer.bos().is_some() && ids.first().copied() == self.tokenizer.bos() {
            ids.remove(0);
        }
        Ok(ids)
    }

    /// The ids of `completion` as the reply to `prompt`: the rendering of both minus the
    /// rendering of `prompt` with the generation prompt, up to and including the first
    /// end-of-turn token.
    pub fn completion_ids(&self, prompt: &[Message], completion: &[Message]) -> Result<Vec<u32>> {
        if completion.is_empty() {
            return Err(ArcaneError::InvalidInput(
                "the reply holds no message".into(),
            ));
        }
        let opening = self.render(prompt, true)?;
        let all: Vec<Message> = prompt.iter().chain(completion).cloned().collect();
        let whole = self.render(&all, false)?;
        let Some(reply) = whole.strip_prefix(opening.as_str()) else {
            return Err(ArcaneError::InvalidInput(format!(
                "the chat template {} renders the prompt (with the generation prompt) as text that \
                 does not open the rendering of prompt and reply together, so the reply cannot be \
                 cut out of it (alignment takes the difference, as TRL does); use a template that \
                 renders conversations as growing prefixes, or plain-text pairs",
                self.template.origin()
            )));
        };
        let mut ids = self.tokenizer.encode_chat(reply)?;
        if let Some(end) = ids.iter().position(|id| self.stop.contains(id)) {
            ids.truncate(end + 1);
        }
        if ids.is_empty() {
            return Err(ArcaneError::InvalidInput(format!(
                "the chat template {} renders the reply as no token",
                self.template.origin()
            )));
        }
        Ok(ids)
    }

    /// A pair's ids: the rendered prompt and each rendered reply.
    pub fn tokenize_pair(&self, pair: &ChatPair, margin: Option<f64>) -> Result<TokenPair> {
        Ok(TokenPair {
            prompt: self.prompt_ids(&pair.prompt)?,
            chosen: self.completion_ids(&pair.prompt, &pair.chosen)?,
            rejected: self.completion_ids(&pair.prompt, &pair.rejected)?,
            margin: margin.unwrap_or(0.0) as f32,
        })
    }
}

/// The error for conversations given to a model without a chat template.
pub(crate) fn no_template(what: &str) -> ArcaneError {
    ArcaneError::InvalidInput(format!(
        "the {what} are conversations (lists of messages), but the model has no chat template; \
         start from a model that has one (fine-tune it on conversations with `arcane-cli sft`, \
         which gives a GPT-2 model Arcane's ChatML, then `lora merge`), or give plain-text rows"
    ))
}

/// Token pairs of `rows`: plain text with `tokenizer` ([`super::tokenize_pairs`]),
/// conversations with `chat` (required for them).
pub fn tokenize_pair_rows(
    rows: &PairRows,
    tokenizer: &ModelTokenizer,
    chat: Option<&ChatFormat>,
) -> Result<Vec<TokenPair>> {
    match rows {
        PairRows::Text(pairs) => super::data::tokenize_pairs(pairs, tokenizer),
        PairRows::Chat(pairs) => {
            let chat = chat.ok_or_else(|| no_template("preference pairs"))?;
            pairs
                .iter()
                .enumerate()
                .map(|(i, (p, m))| {
                    chat.tokenize_pair(p, *m)
                        .map_err(|e| ArcaneError::InvalidInput(format!("pair {}: {e}", i + 1)))
                })
                .collect()
        }
    }
}

/// Prompt ids of `rows` (without the opening BOS): plain text with `tokenizer`
/// ([`super::prompt_ids`]), conversations with `chat` (required for them).
pub fn tokenize_prompt_rows(
    rows: &PromptRows,
    tokenizer: &ModelTokenizer,
    chat: Option<&ChatFormat>,
) -> Result<Vec<Vec<u32>>> {
    match rows {
        PromptRows::Text(prompts) => prompts
            .iter()
            .map(|p| super::data::prompt_ids(tokenizer, &p.prompt))
            .collect(),
        PromptRows::Chat(prompts) => {
            let chat = chat.ok_or_else(|| no_template("prompts"))?;
            prompts.iter().map(|p| chat.prompt_ids(p)).collect()
        }
    }
}

/// One pair row of either format.
enum PairRow {
    Text(PreferencePair),
    Chat(ChatPair, Option<f64>),
}

/// Parses a conversational pair row (`chosen` is a list); None for a plain-text row.
fn parse_chat_pair(v: &Value) -> Option<std::result::Result<PairRow, String>> {
    if !v.get("chosen").is_some_and(Value::is_array) {
        return None;
    }
    Some((|| {
        let mut chosen = messages_of(&v["chosen"], "chosen")?;
        let mut rejected = match v.get("rejected") {
            Some(r) => messages_of(r, "rejected")?,
            None => return Err(r#"no list field "rejected""#.to_string()),
        };
        let prompt = match v.get("prompt") {
            None | Some(Value::Null) => {
                // TRL's extract_prompt: the messages both conversations open with.
                let shared = chosen
                    .iter()
                    .zip(&rejected)
                    .take_while(|(c, r)| c == r)
                    .count();
                rejected.drain(..shared);
                chosen.drain(..shared).collect()
            }
            Some(p) => messages_of(p, "prompt")?,
        };
        if prompt.is_empty() {
            return Err("the pair has no prompt messages (\"prompt\", or messages both conversations open with)".into());
        }
        if chosen.is_empty() || rejected.is_empty() {
            return Err("\"chosen\" or \"rejected\" holds no reply".into());
        }
        let margin = match v.get("margin") {
            None | Some(Value::Null) => None,
            Some(m) => Some(
                m.as_f64()
                    .filter(|m| m.is_finite())
                    .ok_or("field \"margin\" is not a finite number")?,
            ),
        };
        Ok(PairRow::Chat(
            ChatPair {
                prompt,
                chosen,
                rejected,
            },
            margin,
        ))
    })())
}

/// Parses a conversational prompt row (`prompt` is a list); None for a plain-text row.
fn parse_chat_prompt(v: &Value) -> Option<std::result::Result<Vec<Message>, String>> {
    let prompt = v.get("prompt").filter(|p| p.is_array())?;
    Some(messages_of(prompt, "prompt").and_then(|m| {
        if m.is_empty() {
            Err("\"prompt\" holds no message".into())
        } else {
            Ok(m)
        }
    }))
}

/// Reads preference pairs of either format, plain text or conversational (plain or `.gz`;
/// one file holds one format: a line in the other is bad).
pub fn load_pair_rows(path: &Path, skip_bad: bool) -> Result<(PairRows, Vec<BadLine>)> {
    parse_pair_rows(open(path)?, path, skip_bad)
}

/// Reads prompts of either format, `{"prompt": "..."}` or `{"prompt": [messages]}`.
pub fn load_prompt_rows(path: &Path, skip_bad: bool) -> Result<(PromptRows, Vec<BadLine>)> {
    parse_prompt_rows(open(path)?, path, skip_bad)
}

/// [`load_pair_rows`] over any reader; `source` names it in errors.
pub fn parse_pair_rows(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
) -> Result<(PairRows, Vec<BadLine>)> {
    let first = Cell::new(None);
    let (rows, bad) = parse_lines(reader, source, skip_bad, "preference pairs", |v| {
        let row = match parse_chat_pair(v) {
            Some(row) => row?,
            None => PairRow::Text(parse_pair(v)?),
        };
        one_format(&first, matches!(row, PairRow::Chat(..)))?;
        Ok(row)
    })?;
    let rows = match first.get() {
        Some(true) => PairRows::Chat(
            rows.into_iter()
                .filter_map(|r| match r {
                    PairRow::Chat(p, m) => Some((p, m)),
                    PairRow::Text(_) => None,
                })
                .collect(),
        ),
        _ => PairRows::Text(
            rows.into_iter()
                .filter_map(|r| match r {
                    PairRow::Text(p) => Some(p),
                    PairRow::Chat(..) => None,
                })
                .collect(),
        ),
    };
    Ok((rows, bad))
}

/// [`load_prompt_rows`] over any reader; `source` names it in errors.
pub fn parse_prompt_rows(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
) -> Result<(PromptRows, Vec<BadLine>)> {
    let first = Cell::new(None);
    let (rows, bad) = parse_lines(reader, source, skip_bad, "prompts", |v| {
        let row = match parse_chat_prompt(v) {
            Some(messages) => Err(messages?),
            None => Ok(PromptRecord {
                prompt: text_field(v, "prompt", false)?,
            }),
        };
        one_format(&first, row.is_err())?;
        Ok(row)
    })?;
    let rows = match first.get() {
        Some(true) => PromptRows::Chat(rows.into_iter().filter_map(|r| r.err()).collect()),
        _ => PromptRows::Text(rows.into_iter().filter_map(|r| r.ok()).collect()),
    };
    Ok((rows, bad))
}

/// Keeps a file to the format of its first good row (`chat` or not).
fn one_format(first: &Cell<Option<bool>>, chat: bool) -> std::result::Result<(), String> {
    match first.get() {
        None => {
            first.set(Some(chat));
            Ok(())
        }
        Some(f) if f == chat => Ok(()),
        Some(f) => Err(format!(
            "the row is {} but the file's first rows are {}; one file holds one format",
            if chat { "conversational" } else { "plain text" },
            if f { "conversational" } else { "plain text" }
        )),
    }
}
