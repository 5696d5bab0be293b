//! Token ids and loss masks of SFT rows, as TRL's `SFTTrainer` builds them
//! (`trl/trainer/sft_trainer.py`, `tokenize` and `add_eos`):
//!
//! - text: the tokenizer's ids (with the special tokens `tokenizer(text)` adds) plus EOS when
//!   the text does not already end with it; every token carries loss;
//! - prompt/completion: the ids of `prompt + completion` plus EOS; the tokens after the
//!   prompt's ids carry loss (TRL's `completion_only_loss` default). TRL tokenizes the prompt
//!   alone and takes its length as the boundary, warning when those ids are not a prefix of the
//!   whole; so does Arcane ([`EncodeStats::boundary_mismatches`]);
//! - conversations: the chat template's rendering, encoded without adding special tokens (the
//!   template writes them); only assistant turns carry loss (TRL's `assistant_only_loss=True`;
//!   its default trains conversations on every token). Assistant spans come from the
//!   template itself, by prefix difference: for assistant message `i`, rendering
//!   `messages[..i]` with the generation prompt must be a prefix of rendering
//!   `messages[..=i]`, and both of the whole conversation's rendering; the turn is the tokens
//!   between the two. The check is on the token ids (each prefix encoded alone), so the span
//!   is exact by construction; a template that re-renders earlier turns (or a tokenizer that
//!   merges across the boundary) is refused with the turn named, since no span can be derived.
//!   The span includes what the template closes a turn with (`<|im_end|>\n` for ChatML), so
//!   the model learns to end its turn; no EOS is appended (TRL appends none to conversations).
//! - conversational prompt/completion: the same with `prompt` as the opening (rendered with the
//!   generation prompt) and everything after it carrying loss.
//!
//! Sequences longer than `max_length` keep their start (TRL's `truncation_mode="keep_start"`).

use super::data::{SftRow, SftRows};
use crate::chat::{ChatTemplate, Conversation, Message, RenderOptions};
use crate::error::{ArcaneError, Result};
use crate::jsonl::BadLine;
use crate::tokenizer::ModelTokenizer;

/// One example: token ids and which of them carry loss.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SftExample {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `loss[i]`: token `i` is a target of the loss (predicted from the tokens before it).
    /// `loss[0]` is always false (nothing predicts the first token).
    pub loss: Vec<bool>,
}

impl SftExample {
    /// Tokens in all.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the example has no token.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids that carry loss, in order.
    pub fn loss_ids(&self) -> Vec<u32> {
        self.ids
            .iter()
            .zip(&self.loss)
            .filter(|(_, &l)| l)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Tokens that carry loss.
    pub fn loss_tokens(&self) -> usize {
        self.loss.iter().filter(|&&l| l).count()
    }

    /// `ids` with loss on the tokens from `start` to `end`.
    fn spans(ids: Vec<u32>, spans: &[(usize, usize)]) -> Self {
        let mut loss = vec![false; ids.len()];
        for &(start, end) in spans {
            for l in &mut loss[start.max(1)..end.min(ids.len())] {
                *l = true;
            }
        }
        Self { ids, loss }
    }

    /// Keeps the first `max_length` tokens.
    fn truncate(&mut self, max_length: usize) -> bool {
        let cut = self.ids.len() > max_length;
        self.ids.truncate(max_length);
        self.loss.truncate(max_length);
        cut
    }
}

/// What encoding a file found besides its examples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Examples cut to `max_length`.
    pub truncated: usize,
    /// Examples left without any loss token after the cut (dropped).
    pub dropped: usize,
    /// Prompt/completion rows whose prompt ids are not a prefix of the whole's (TRL warns).
    pub boundary_mismatches: usize,
}

/// Turns rows into examples with one tokenizer and, for conversations, one template.
#[derive(Clone, Debug)]
pub struct SftEncoder {
    tokenizer: ModelTokenizer,
    template: Option<ChatTemplate>,
    max_length: usize,
}

/// Why a row could not be encoded: a fault of the row (skippable) or of the template (not).
enum RowError {
    Row(String),
    Template(ArcaneError),
}

impl From<ArcaneError> for RowError {
    fn from(e: ArcaneError) -> Self {
        Self::Row(e.to_string())
    }
}

impl SftEncoder {
    /// An encoder; `template` is needed for conversational rows only.
    pub fn new(
        tokenizer: ModelTokenizer,
        template: Option<ChatTemplate>,
        max_length: usize,
    ) -> Self {
        Self {
            tokenizer,
            template,
            max_length: max_length.max(2),
        }
    }

    /// Encodes every row (see the module docs). A bad row is an error naming its line or, with
    /// `skip_bad`, skipped and returned; a template that cannot give assistant spans is an
    /// error whatever `skip_bad` says.
    pub fn encode_rows(
        &self,
        rows: &SftRows,
        skip_bad: bool,
        source: &std::path::Path,
    ) -> Result<(Vec<SftExample>, EncodeStats, Vec<BadLine>)> {
        if rows.format.is_conversational() && self.template.is_none() {
            return Err(ArcaneError::InvalidInput(format!(
                "{} holds conversations, but the model has no chat template; give it one \
                 (a chat_template.jinja in the model folder) or use Arcane's ChatML",
                source.display()
            )));
        }
        let (mut examples, mut stats, mut bad) = (Vec::new(), EncodeStats::default(), Vec::new());
        for (row, &line) in rows.rows.iter().zip(&rows.lines) {
            match self.encode_row(row, &mut stats) {
                Ok(Some(example)) => examples.push(example),
                Ok(None) => stats.dropped += 1,
                Err(RowError::Template(e)) => return Err(e),
                Err(RowError::Row(reason)) if skip_bad => bad.push(BadLine { line, reason }),
                Err(RowError::Row(reason)) => {
                    return Err(ArcaneError::format(
                        source,
                        format!(
                            "line {line}: {reason} (fix the line, or pass --skip-bad to skip bad lines)"
                        ),
                    ))
                }
            }
        }
        Ok((examples, stats, bad))
    }

    /// One row's example, or None when no token carries loss after truncation.
    pub fn encode(&self, row: &SftRow) -> Result<Option<SftExample>> {
        self.encode_row(row, &mut EncodeStats::default())
            .map_err(|e| match e {
                RowError::Row(reason) => ArcaneError::InvalidInput(reason),
                RowError::Template(e) => e,
            })
    }

    fn encode_row(
        &self,
        row: &SftRow,
        stats: &mut EncodeStats,
    ) -> std::result::Result<Option<SftExample>, RowError> {
        let mut example = match row {
            SftRow::Text(text) => {
                let ids = self.with_eos(self.tokenizer.encode_prompt(text)?);
                let n = ids.len();
                SftExample::spans(ids, &[(0, n)])
            }
            SftRow::PromptCompletion { prompt, completion } => {
                let prompt_ids = self.tokenizer.encode_prompt(prompt)?;
                let whole = format!("{prompt}{completion}");
                let ids = self.with_eos(self.tokenizer.encode_prompt(&whole)?);
                if !ids.starts_with(&prompt_ids) {
                    stats.boundary_mismatches += 1;
                }
                let n = ids.len();
                SftExample::spans(ids, &[(prompt_ids.len(), n)])
            }
            SftRow::Messages(messages) => self.conversation(messages)?,
            SftRow::ChatPromptCompletion { prompt, completion } => {
                if prompt.is_empty() {
                    return Err(RowError::Row(r#""prompt" holds no message"#.into()));
                }
                let all: Vec<Message> = prompt.iter().chain(completion).cloned().collect();
                let (opening, whole) = self.prefix_pair(&all, prompt.len(), all.len())?;
                let n = whole.len();
                SftExample::spans(whole, &[(opening, n)])
            }
        };
        if example.truncate(self.max_length) {
            stats.truncated += 1;
        }
        Ok((example.loss_tokens() > 0).then_some(example))
    }

    /// `ids` with the tokenizer's EOS appended unless they already end with it (TRL's
    /// `add_eos`).
    fn with_eos(&self, mut ids: Vec<u32>) -> Vec<u32> {
        if let Some(eos) = self.tokenizer.eos() {
            if ids.last() != Some(&eos) {
                ids.push(eos);
            }
        }
        ids
    }

    /// A conversation with loss on every assistant message.
    fn conversation(&self, messages: &[Message]) -> std::result::Result<SftExample, RowError> {
        let turns: Vec<usize> = (0..messages.len())
            .filter(|&i| messages[i].role == "assistant")
            .collect();
        if turns.is_empty() {
            return Err(RowError::Row(
                "the conversation has no assistant message to learn".into(),
            ));
        }
        if turns[0] == 0 {
            return Err(RowError::Row(
                "the conversation opens with an assistant message; the first message must be the user's (or a system message)".into(),
            ));
        }
        let full = self.render(messages, false)?;
        let full_ids = self.tokenizer.encode_chat(&full)?;
        let mut spans = Vec::with_capacity(turns.len());
        for &i in &turns {
            let (start, ids) = self.prefix_pair(messages, i, i + 1)?;
            // Each turn's rendering must also open the whole conversation's: a template that
            // re-renders earlier turns once later ones follow would move them.
            if !full_ids.starts_with(&ids) {
                return Err(self.not_prefix(i + 1, "the whole conversation"));
            }
            spans.push((start, ids.len()));
        }
        Ok(SftExample::spans(full_ids, &spans))
    }

    /// Renders `messages[..opening]` with the generation prompt and `messages[..upto]`
    /// without, checks that the first is a prefix of the second (as text and as token ids),
    /// and returns the first's length in tokens and the second's ids.
    fn prefix_pair(
        &self,
        messages: &[Message],
        opening: usize,
        upto: usize,
    ) -> std::result::Result<(usize, Vec<u32>), RowError> {
        let before = self.render(&messages[..opening], true)?;
        let after = self.render(&messages[..upto], false)?;
        if !after.starts_with(&before) {
            return Err(self.not_prefix(opening, "the rendering up to it"));
        }
        let before_ids = self.tokenizer.encode_chat(&before)?;
        let after_ids = self.tokenizer.encode_chat(&after)?;
        if !after_ids.starts_with(&before_ids) {
            return Err(RowError::Template(ArcaneError::InvalidInput(format!(
                "message {opening}: the tokens of the conversation before it (with the generation prompt) \
                 are not a prefix of the tokens with it: the tokenizer merges text across the turn boundary \
                 of the chat template {}, so the assistant tokens cannot be told apart; use prompt/completion rows",
                self.template_name()
            ))));
        }
        Ok((before_ids.len(), after_ids))
    }

    fn render(&self, messages: &[Message], generation: bool) -> Result<String> {
        let template = self.template.as_ref().ok_or_else(|| {
            ArcaneError::InvalidInput("conversations need a chat template".into())
        })?;
        let options = RenderOptions {
            add_generation_prompt: generation,
            ..Default::default()
        };
        template.render(&Conversation::from_messages(messages), &options)
    }

    fn template_name(&self) -> String {
        self.template
            .as_ref()
            .map_or("(none)".into(), |t| t.origin().to_string())
    }

    fn not_prefix(&self, message: usize, what: &str) -> RowError {
        RowError::Template(ArcaneError::InvalidInput(format!(
            "the chat template {} does not render conversations as growing prefixes: the rendering \
             of the messages before message {message} (with the generation prompt) is not the start \
             of {what}. SFT finds the assistant tokens by comparing renderings, so it cannot train on \
             conversations with this template (it rewrites earlier turns, e.g. drops reasoning or \
             moves the system prompt); use conversational prompt/completion rows with one assistant \
             turn, or another template",
            self.template_name()
        )))
    }
}
