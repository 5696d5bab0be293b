//! Token sequences for alignment, `[BOS] + prompt + completion`, and right-padded batches of
//! them.
//!
//! No attention mask is needed: attention is causal, so the padding after a sequence's last
//! real token never reaches a real position, and every position keeps its absolute index
//! (padding on the left would shift them). Losses pick completion tokens with a mask, and the
//! reward model reads the last real position by index.

use burn::prelude::*;

use crate::error::{ArcaneError, Result};
use crate::model::ModelConfig;
use crate::tokenizer::Tokenizer;

/// The token that opens every sequence. A model imported from Hugging Face opens with its
/// `bos_token_id` (Llama's `<s>`, which its tokenizer adds to a prompt; Qwen's
/// `<|endoftext|>`, its document separator, which its tokenizer does not add), else its first
/// `eos_token_id`. An Arcane model opens with GPT-2's end-of-text, which `prepare` puts before
/// every document, so the model has seen it as a beginning. A model whose vocabulary is too
/// small for it (the test models) uses id 0.
pub fn bos_of(config: &ModelConfig) -> u32 {
    let hf = config.hf_token_ids.as_ref();
    if let Some(id) = hf.and_then(|t| t.bos.or(t.eos.first().copied())) {
        return id;
    }
    if config.vocab_size > Tokenizer::END_OF_TEXT as usize {
        Tokenizer::END_OF_TEXT
    } else {
        0
    }
}

/// The tokens that end a sampled response: a Hugging Face model's `eos_token_id`s (Llama 3
/// lists several), else end-of-text if the vocabulary has it.
pub fn eos_of(config: &ModelConfig) -> Vec<u32> {
    match &config.hf_token_ids {
        Some(t) if !t.eos.is_empty() => t.eos.clone(),
        _ => (config.vocab_size > Tokenizer::END_OF_TEXT as usize)
            .then_some(Tokenizer::END_OF_TEXT)
            .into_iter()
            .collect(),
    }
}

/// Ids a model may be asked to score or sample: its vocabulary, without the padding ids of an
/// Arcane vocabulary rounded up beyond GPT-2's 50257 (50304). A Hugging Face model's
/// vocabulary is its tokenizer's (Qwen's 151936 rows).
pub fn vocab_limit_of(config: &ModelConfig) -> usize {
    if config.hf_token_ids.is_none() && config.vocab_size > Tokenizer::VOCAB_SIZE {
        Tokenizer::VOCAB_SIZE
    } else {
        config.vocab_size
    }
}

/// Fails if an id is not below `limit`, naming `what` (a forward would read out of bounds).
pub fn check_ids(ids: &[u32], limit: usize, what: &str) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= limit) {
        Some(id) => Err(ArcaneError::InvalidInput(format!(
            "{what} holds token id {id}, but the model scores only ids below {limit}; \
             was the model trained with another tokenizer?"
        ))),
        None => Ok(()),
    }
}

/// One tokenised example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// `[BOS] + prompt + completion`.
    pub ids: Vec<u32>,
    /// Tokens before the completion: 1 (the BOS) plus the prompt's.
    pub prompt_len: usize,
}

impl Sequence {
    /// `[bos] + prompt + completion`.
    pub fn new(bos: u32, prompt: &[u32], completion: &[u32]) -> Self {
        let mut ids = Vec::with_capacity(1 + prompt.len() + completion.len());
        ids.push(bos);
        ids.extend_from_slice(prompt);
        ids.extend_from_slice(completion);
        Self {
            ids,
            prompt_len: 1 + prompt.len(),
        }
    }

    /// Tokens in all.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for the BOS alone (never: a sequence always holds it).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens of the completion.
    pub fn completion_len(&self) -> usize {
        self.ids.len() - self.prompt_len
    }

    /// Fits the sequence into `max_len >= 2` tokens, as TRL does: the completion loses tokens
    /// at its end (keeping at least one), then the prompt loses tokens at its start. Returns
    /// whether anything was cut.
    pub fn truncate(&mut self, max_len: usize) -> bool {
        let max_len = max_len.max(2);
        if self.len() <= max_len {
            return false;
        }
        let room = max_len - 1;
        let prompt = &self.ids[1..self.prompt_len];
        let completion = &self.ids[self.prompt_len..];
        let (p, c) = (prompt.len(), completion.len());
        let keep_c = if p < room { c.min(room - p) } else { 0 }.max(c.min(1));
        let keep_p = (room - keep_c).min(p);
        let mut ids = Vec::with_capacity(max_len);
        ids.push(self.ids[0]);
        ids.extend_from_slice(&prompt[p - keep_p..]);
        ids.extend_from_slice(&completion[..keep_c]);
        self.ids = ids;
        self.prompt_len = 1 + keep_p;
        true
    }
}

/// Right-padded sequences with their completion masks.
#[derive(Clone, Debug)]
pub struct SeqBatch<B: Backend> {
    /// `[B, T]` ids, padded after each sequence's end.
    pub tokens: Tensor<B, 2, Int>,
    /// `[B, T - 1]` the next token at each position (`tokens` shifted by one).
    pub targets: Tensor<B, 2, Int>,
    /// `[B, T - 1]` 1 where the target is a completion token, 0 at prompt and padding.
    pub mask: Tensor<B, 2>,
    /// `[B]` position of each sequence's last real token in the flattened `[B·T]` positions.
    pub last: Tensor<B, 1, Int>,
    /// Real length of each sequence.
    pub lengths: Vec<usize>,
    /// Completion tokens of each sequence.
    pub completion_lens: Vec<usize>,
}

impl<B: Backend> SeqBatch<B> {
    /// Pads `seqs` with `pad` to the longest of them (at least 2 tokens).
    pub fn new(seqs: &[Sequence], pad: u32, device: &B::Device) -> Self {
        let b = seqs.len();
        let t = seqs.iter().map(Sequence::len).max().unwrap_or(0).max(2);
        let mut tokens = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * (t - 1));
        let mut mask = Vec::with_capacity(b * (t - 1));
        let mut last = Vec::with_capacity(b);
        for (row, seq) in seqs.iter().enumerate() {
            let padded: Vec<i64> = (0..t)
                .map(|i| i64::from(seq.ids.get(i).copied().unwrap_or(pad)))
                .collect();
            // Position i predicts token i + 1: a completion token when i + 1 lies in
            // [prompt_len, len).
            for i in 0..t - 1 {
                let completion = i + 1 >= seq.prompt_len && i + 1 < seq.len();
                mask.push(if completion { 1.0f32 } else { 0.0 });
            }
            targets.extend_from_slice(&padded[1..]);
            tokens.extend(padded);
            last.push((row * t + seq.len().max(1) - 1) as i64);
        }
        Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [b, t]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, t - 1]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, t - 1]), device),
            last: Tensor::from_data(TensorData::new(last, [b]), device),
            lengths: seqs.iter().map(Sequence::len).collect(),
            completion_lens: seqs.iter().map(Sequence::completion_len).collect(),
        }
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// True when the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_cuts_the_completion_end_then_the_prompt_start() {
        let mut s = Sequence::new(9, &[1, 2, 3], &[4, 5, 6, 7]);
        assert!(s.truncate(6));
        assert_eq!((s.ids.clone(), s.prompt_len), (vec![9, 1, 2, 3, 4, 5], 4));
        let mut s = Sequence::new(9, &[1, 2, 3, 4, 5], &[6, 7]);
        assert!(s.truncate(4));
        assert_eq!((s.ids.clone(), s.prompt_len), (vec![9, 4, 5, 6], 3));
        let mut s = Sequence::new(9, &[1], &[2]);
        assert!(!s.truncate(8));
    }

    #[test]
    fn masks_select_completion_targets_and_last_indexes_real_tokens() {
        type B = burn::backend::Flex;
        let seqs = [Sequence::new(0, &[1], &[2, 3]), Sequence::new(0, &[], &[4])];
        let b = SeqBatch::<B>::new(&seqs, 7, &Default::default());
        let mask: Vec<f32> = b.mask.into_data().to_vec().unwrap();
        // Row 0: [0, 1, 2, 3] predicts 1, 2, 3 (completion: 2, 3); row 1: [0, 4, 7, 7].
        assert_eq!(mask, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let last: Vec<i64> = b.last.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(last, vec![3, 5]);
    }
}
