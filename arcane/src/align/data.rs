//! Preference pairs and prompts in TRL's JSONL formats, read with line numbers:
//!
//! - pairs: `{"prompt": "...", "chosen": "...", "rejected": "...", "margin": 0.5}` (`prompt`
//!   and `margin` optional; TRL's "standard preference" format);
//! - prompts: `{"prompt": "..."}` (TRL's "prompt-only" format).
//!
//! Files may be gzip-compressed (`.gz`). A malformed line is an error naming it, or, with
//! `skip_bad`, skipped and reported, as HellaSwag's loader does.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::batch::{SeqBatch, Sequence};
use crate::error::{ArcaneError, Result};
use crate::jsonl::{self, BadLine};
use crate::tokenizer::ModelTokenizer;

/// One preference: `chosen` is preferred to `rejected` as a continuation of `prompt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Shared opening (may be empty).
    #[serde(default)]
    pub prompt: String,
    /// The preferred completion.
    pub chosen: String,
    /// The other completion.
    pub rejected: String,
    /// How much more `chosen` is preferred (the reward model's optional margin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
}

/// One prompt to continue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// The opening text.
    pub prompt: String,
}

/// A pair as token ids (the model's tokenizer; prompt and completions tokenised separately, as
/// TRL).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPair {
    /// Prompt ids (without the BOS).
    pub prompt: Vec<u32>,
    /// Chosen completion ids.
    pub chosen: Vec<u32>,
    /// Rejected completion ids.
    pub rejected: Vec<u32>,
    /// The margin (0 when the file gives none).
    pub margin: f32,
}

impl TokenPair {
    /// The chosen and the rejected sequence, each cut to `max_len` tokens.
    pub fn sequences(&self, bos: u32, max_len: usize) -> (Sequence, Sequence) {
        let mut chosen = Sequence::new(bos, &self.prompt, &self.chosen);
        let mut rejected = Sequence::new(bos, &self.prompt, &self.rejected);
        chosen.truncate(max_len);
        rejected.truncate(max_len);
        (chosen, rejected)
    }

    /// Every id of the pair.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.prompt
            .iter()
            .chain(&self.chosen)
            .chain(&self.rejected)
            .copied()
    }
}

/// Tokenises pairs with the model's tokenizer, as TRL's DPO and reward trainers do: the
/// prompt as `tokenizer(prompt)` (with the special tokens its post-processor adds: Llama's
/// `<s>`), each completion without special tokens. The BOS a tokenizer adds is taken off again
/// ([`prompt_ids`]): the sequences put the model's own in front ([`bos_of`](super::bos_of)),
/// so it is never there twice.
pub fn tokenize_pairs(
    pairs: &[PreferencePair],
    tokenizer: &ModelTokenizer,
) -> Result<Vec<TokenPair>> {
    pairs
        .iter()
        .map(|p| {
            Ok(TokenPair {
                prompt: prompt_ids(tokenizer, &p.prompt)?,
                chosen: tokenizer.encode(&p.chosen)?,
                rejected: tokenizer.encode(&p.rejected)?,
                margin: p.margin.unwrap_or(0.0) as f32,
            })
        })
        .collect()
}

/// A prompt's ids without the opening BOS: `tokenizer(prompt)` less the begin-of-sequence
/// token its post-processor put in front (GPT-2 and Qwen add none: their ids are the text's).
pub fn prompt_ids(tokenizer: &ModelTokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids = tokenizer.encode_prompt(text)?;
    let plain = tokenizer.encode(text)?;
    if ids.len() > plain.len() && ids.first().is_some_and(|&id| Some(id) == tokenizer.bos()) {
        ids.remove(0);
    }
    Ok(ids)
}

/// The chosen sequences of `pairs`, then their rejected ones, right-padded (`[2P, T]`).
pub(crate) fn pair_batch<B: burn::prelude::Backend>(
    pairs: &[&TokenPair],
    bos: u32,
    max_len: usize,
    device: &B::Device,
) -> SeqBatch<B> {
    let (chosen, rejected): (Vec<Sequence>, Vec<Sequence>) =
        pairs.iter().map(|p| p.sequences(bos, max_len)).unzip();
    let seqs: Vec<Sequence> = chosen.into_iter().chain(rejected).collect();
    SeqBatch::new(&seqs, bos, device)
}

/// Fails if some pair holds an id the model cannot score.
pub(crate) fn check_pairs(pairs: &[TokenPair], limit: usize) -> Result<()> {
    for (i, p) in pairs.iter().enumerate() {
        if let Some(id) = p.ids().find(|&id| id as usize >= limit) {
            return Err(ArcaneError::InvalidInput(format!(
                "pair {} holds token id {id}, but the model scores only ids below {limit}; \
                 was it trained with another tokenizer?",
                i + 1
            )));
        }
    }
    Ok(())
}

pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    Ok(if path.to_string_lossy().ends_with(".gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Reads preference pairs (plain or `.gz`).
pub fn load_pairs(path: &Path, skip_bad: bool) -> Result<(Vec<PreferencePair>, Vec<BadLine>)> {
    parse_pairs(open(path)?, path, skip_bad)
}

/// Reads prompts (plain or `.gz`).
pub fn load_prompts(path: &Path, skip_bad: bool) -> Result<(Vec<PromptRecord>, Vec<BadLine>)> {
    parse_prompts(open(path)?, path, skip_bad)
}

/// [`load_pairs`] over any reader; `source` names it in errors.
pub fn parse_pairs(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
) -> Result<(Vec<PreferencePair>, Vec<BadLine>)> {
    parse_lines(reader, source, skip_bad, "preference pairs", parse_pair)
}

/// [`load_prompts`] over any reader; `source` names it in errors.
pub fn parse_prompts(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
) -> Result<(Vec<PromptRecord>, Vec<BadLine>)> {
    parse_lines(reader, source, skip_bad, "prompts", |v| {
        Ok(PromptRecord {
            prompt: text_field(v, "prompt", false)?,
        })
    })
}

pub(crate) fn parse_lines<T>(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
    what: &str,
    parse: impl Fn(&Value) -> std::result::Result<T, String>,
) -> Result<(Vec<T>, Vec<BadLine>)> {
    let (items, bad) = jsonl::parse_lines(reader, source, skip_bad, |_, v| parse(v))?;
    if items.is_empty() {
        return Err(ArcaneError::format(
            source,
            format!("holds no {what} (expected JSON lines as TRL writes them)"),
        ));
    }
    Ok((items, bad))
}

/// A string field; `required_nonempty` refuses an empty one.
pub(crate) fn text_field(
    v: &Value,
    name: &str,
    required_nonempty: bool,
) -> std::result::Result<String, String> {
    match v.get(name) {
        Some(Value::String(s)) if required_nonempty && s.trim().is_empty() => {
            Err(format!("field \"{name}\" is empty"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(_)) => Err(format!(
            "field \"{name}\" is a list of messages (TRL's conversational format) where plain text \
             is expected: in a conversational row, prompt, chosen and rejected are all lists of \
             messages (load_pair_rows and load_prompt_rows, which the commands use, read both formats)"
        )),
        Some(_) => Err(format!("field \"{name}\" is not a string")),
        None => Err(format!("no string field \"{name}\"")),
    }
}

pub(crate) fn parse_pair(v: &Value) -> std::result::Result<PreferencePair, String> {
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let prompt = match v.get("prompt") {
        None | Some(Value::Null) => String::new(),
        Some(_) => text_field(v, "prompt", false)?,
    };
    let margin = match v.get("margin") {
        None | Some(Value::Null) => None,
        Some(m) => Some(
            m.as_f64()
                .filter(|m| m.is_finite())
                .ok_or("field \"margin\" is not a finite number")?,
        ),
    };
    Ok(PreferencePair {
        prompt,
        chosen: text_field(v, "chosen", true)?,
        rejected: text_field(v, "rejected", true)?,
        margin,
    })
}

/// The pair indices of every optimizer step: epochs over `n` items in an order shuffled with
/// `seed` (a new order each epoch), `batch` per step, `max_steps` steps in all (`None`: `epochs`
/// whole epochs; the last batch of an epoch may be short).
pub(crate) fn epoch_batches(
    n: usize,
    batch: usize,
    epochs: usize,
    max_steps: Option<usize>,
    seed: u64,
) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let batch = batch.max(1);
    let per_epoch = n.div_ceil(batch);
    let total = max_steps.unwrap_or(epochs * per_epoch);
    let mut out = Vec::with_capacity(total);
    let mut epoch = 0u64;
    while out.len() < total && n > 0 {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            seed.wrapping_add(epoch),
        ));
        for chunk in order.chunks(batch) {
            if out.len() == total {
                break;
            }
            out.push(chunk.to_vec());
        }
        epoch += 1;
    }
    out
}

/// Writes `items` as JSON lines, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut bytes = Vec::new();
    for item in items {
        serde_json::to_writer(&mut bytes, item)
            .map_err(|e| ArcaneError::format(path, format!("cannot serialize a line: {e}")))?;
        bytes
            .write_all(b"\n")
            .map_err(|e| ArcaneError::io(path, e))?;
    }
    crate::io::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named_or_skipped() {
        let text = "{\"chosen\": \"a\", \"rejected\": \"b\"}\n\nnot json\n\
                    {\"prompt\": \"p\", \"chosen\": \"\", \"rejected\": \"b\"}\n\
                    {\"chosen\": [{\"role\": \"user\"}], \"rejected\": \"b\"}\n\
                    {\"prompt\": \"q\", \"chosen\": \"c\", \"rejected\": \"d\", \"margin\": 2}\n";
        let path = Path::new("pairs.jsonl");
        let err = parse_pairs(text.as_bytes(), path, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3: not JSON"), "{err}");
        let (pairs, bad) = parse_pairs(text.as_bytes(), path, true).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].margin, Some(2.0));
        assert_eq!(pairs[0].prompt, "");
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(bad[1].reason.contains("\"chosen\" is empty"));
        assert!(bad[2].reason.contains("conversational"));
    }

    #[test]
    fn prompts_need_a_prompt_field() {
        let path = Path::new("prompts.jsonl");
        let err = parse_prompts("{\"text\": \"x\"}\n".as_bytes(), path, false).unwrap_err();
        assert!(err
            .to_string()
            .contains("line 1: no string field \"prompt\""));
        let err = parse_prompts("".as_bytes(), path, true).unwrap_err();
        assert!(err.to_string().contains("holds no prompts"));
    }
}
