//! Log-likelihood requests as lm-evaluation-harness scores them (`lm_eval/api/model.py`
//! `TemplateLM._encode_pair` and `lm_eval/models/huggingface.py` `HFLM._loglikelihood_tokens`):
//! a request is a context and a continuation; its answer is the summed log-probability of the
//! continuation's tokens given everything before them, and whether every one of them is the
//! model's greedy choice.
//!
//! The engine batches requests across documents and choices: requests whose model inputs are
//! identical (lm-eval's one-token-continuation cache: MMLU's ` A`..` D` share one input) run
//! once; the distinct inputs are sorted by length (longest first, as lm-eval does) so that
//! each batch pads little, and only the positions that predict a continuation token go
//! through the vocabulary head.

use std::collections::HashMap;

use burn::prelude::*;

use super::rows::{score_positions, Scored};
use crate::error::{ArcaneError, Result};
use crate::model::Gpt;
use crate::shapes::FixedShapes;
use crate::tokenizer::ModelTokenizer;

/// A context and a continuation, in tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Context tokens (with the tokenizer's BOS when it adds one).
    pub context: Vec<u32>,
    /// Continuation tokens: the ones scored.
    pub continuation: Vec<u32>,
}

/// The answer to one [`Request`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loglik {
    /// Σ log p(continuation token | everything before it), natural log.
    pub loglik: f64,
    /// Continuation tokens scored.
    pub tokens: usize,
    /// Whether every continuation token is the argmax of its distribution.
    pub is_greedy: bool,
}

/// lm-eval's `_encode_pair`: whitespace at the end of the context moves to the front of the
/// continuation; `context + continuation` is encoded whole and split after as many tokens as
/// the context alone encodes to. Both encodings use the tokenizer's default special tokens,
/// as `HFLM.tok_encode` does with `add_bos_token` unset (GPT-2: none; Llama: `<s>` in front).
pub fn encode_pair(
    tokenizer: &ModelTokenizer,
    context: &str,
    continuation: &str,
) -> Result<Request> {
    if context.is_empty() {
        return Err(ArcaneError::InvalidInput(
            "a log-likelihood request has an empty context".into(),
        ));
    }
    let kept = context.trim_end().len();
    let (context, moved) = context.split_at(kept);
    let whole = tokenizer.encode_prompt(&format!("{context}{moved}{continuation}"))?;
    let context_ids = tokenizer.encode_prompt(context)?;
    let split = context_ids.len().min(whole.len());
    Ok(Request {
        continuation: whole[split..].to_vec(),
        context: context_ids,
    })
}

/// Whether the tokenizer puts a begin-of-sequence token in front of encoded text (the
/// `"bos"` of evaluation outputs).
pub fn adds_bos(tokenizer: &ModelTokenizer) -> Result<bool> {
    Ok(tokenizer.encode_prompt("a")?.len() > tokenizer.encode("a")?.len())
}

/// One model input: the tokens and, per request that reads it, where its continuation lies.
struct Input {
    tokens: Vec<u32>,
    /// `(request, first predicting position, continuation tokens)`.
    readers: Vec<(usize, usize, Vec<u32>)>,
}

/// lm-eval's left truncation: of `context + continuation`, the last `window + 1` tokens are
/// kept and the last one dropped from the input; the continuation's tokens are predicted by
/// the input's last `continuation.len()` positions.
fn input_of(request: &Request, window: usize) -> Result<(Vec<u32>, usize)> {
    let n = request.continuation.len();
    if n == 0 {
        return Err(ArcaneError::InvalidInput(
            "a log-likelihood request has no continuation token".into(),
        ));
    }
    if n > window || request.context.is_empty() {
        return Err(ArcaneError::InvalidInput(format!(
            "a continuation of {n} tokens after {} context tokens does not fit the model's \
             context of {window} tokens with a context token in front",
            request.context.len()
        )));
    }
    let whole: Vec<u32> = request
        .context
        .iter()
        .chain(&request.continuation)
        .copied()
        .collect();
    let kept = &whole[whole.len().saturating_sub(window + 1)..];
    let input = kept[..kept.len() - 1].to_vec();
    let first = input.len() - n;
    Ok((input, first))
}

/// Distinct model inputs of `requests`, longest first.
fn inputs(requests: &[Request], window: usize) -> Result<Vec<Input>> {
    let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut out: Vec<Input> = Vec::new();
    for (r, request) in requests.iter().enumerate() {
        let (tokens, first) = input_of(request, window)?;
        let k = *index.entry(tokens.clone()).or_insert_with(|| {
            out.push(Input {
                tokens,
                readers: Vec::new(),
            });
            out.len() - 1
        });
        out[k]
            .readers
            .push((r, first, request.continuation.clone()));
    }
    // Longest first; ties in token order, so that the batches do not depend on hashing.
    out.sort_by(|a, b| {
        b.tokens
            .len()
            .cmp(&a.tokens.len())
            .then_with(|| a.tokens.cmp(&b.tokens))
    });
    Ok(out)
}

/// Scores `requests` with at most `batch` distinct inputs per forward pass (lengths and row
/// counts rounded by `shapes`); `progress(done)` gets the number of requests answered so far.
/// Answers are in the order of `requests`.
pub fn score_requests<B: Backend>(
    model: &Gpt<B>,
    requests: &[Request],
    batch: usize,
    shapes: FixedShapes,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Loglik>> {
    let window = model.config().max_seq_len;
    for r in requests {
        model.check_tokens(&r.context)?;
        model.check_tokens(&r.continuation)?;
    }
    let inputs = inputs(requests, window)?;
    let batch = batch.max(1);
    let mut answers: Vec<Option<Loglik>> = vec![None; requests.len()];
    let mut done = 0;
    for chunk in inputs.chunks(batch) {
        let rows: Vec<&[u32]> = chunk.iter().map(|i| i.tokens.as_slice()).collect();
        let mut scored = Vec::new();
        for (row, input) in chunk.iter().enumerate() {
            for (_, first, continuation) in &input.readers {
                scored.extend(continuation.iter().enumerate().map(|(j, &token)| Scored {
                    row,
                    position: first + j,
                    token,
                }));
            }
        }
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(1);
        let shape = [shapes.rows(rows.len(), batch), shapes.seq_len(t, window)];
        let scores = score_positions(model, &rows, shape, &scored, shapes, true);
        let mut next = scores.iter();
        for input in chunk {
            for (r, _, continuation) in &input.readers {
                let mine: Vec<_> = next.by_ref().take(continuation.len()).collect();
                answers[*r] = Some(Loglik {
                    loglik: mine.iter().map(|s| s.log_prob as f64).sum(),
                    tokens: continuation.len(),
                    is_greedy: mine.iter().all(|s| s.greedy),
                });
                done += 1;
            }
        }
        progress(done);
    }
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every request is read by one input"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(context: &[u32], continuation: &[u32]) -> Request {
        Request {
            context: context.to_vec(),
            continuation: continuation.to_vec(),
        }
    }

    #[test]
    fn long_requests_keep_the_last_window_plus_one_tokens() {
        // 6 context + 3 continuation tokens, window 5: keep tokens 3..9, input 3..8.
        let (input, first) = input_of(&request(&[0, 1, 2, 3, 4, 5], &[6, 7, 8]), 5).unwrap();
        assert_eq!(input, vec![3, 4, 5, 6, 7]);
        // Positions 2, 3, 4 (tokens 5, 6, 7) predict 6, 7, 8.
        assert_eq!(first, 2);
        let (input, first) = input_of(&request(&[0, 1], &[2]), 5).unwrap();
        assert_eq!((input, first), (vec![0, 1], 1));
    }

    #[test]
    fn continuations_longer_than_the_window_are_refused() {
        assert!(input_of(&request(&[0], &[1, 2, 3]), 2).is_err());
        assert!(input_of(&request(&[0], &[]), 2).is_err());
    }

    #[test]
    fn identical_inputs_run_once() {
        let requests = [
            request(&[1, 2], &[3]),
            request(&[1, 2], &[4]),
            request(&[1], &[2, 3]),
            request(&[5], &[6]),
        ];
        let inputs = inputs(&requests, 16).unwrap();
        // [1, 2] is read by the first three requests; [5] by the last.
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0].tokens, vec![1, 2]);
        let readers: Vec<_> = inputs[0].readers.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(readers, vec![(0, 1), (1, 1), (2, 0)]);
    }
}
