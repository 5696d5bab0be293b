//! GPT-2's byte-level BPE (tiktoken's `r50k_base`, embedded in tiktoken-rs, no download): the
//! tokenizer of every Arcane model and of GPT-2 checkpoints.
//!
//! A chat fine-tune may ask for two more tokens, ChatML's `<|im_start|>` and `<|im_end|>`, on
//! rows 50257 and 50258: Arcane's presets pad the vocabulary to 50304, so those rows exist and
//! are never produced by GPT-2's BPE ([`Tokenizer::gpt2_chatml`]).

use tiktoken_rs::CoreBPE;

use crate::error::{ArcaneError, Result};

/// The GPT-2 tokenizer, with or without the ChatML tokens.
#[derive(Clone, Copy)]
pub struct Tokenizer {
    bpe: &'static CoreBPE,
    chatml: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.chatml {
            false => f.write_str("Tokenizer(gpt2 r50k_base)"),
            true => f.write_str("Tokenizer(gpt2 r50k_base + ChatML)"),
        }
    }
}

/// ChatML's tokens as the ChatML tokenizer numbers them: `(text, id)`.
pub const CHATML_TOKENS: [(&str, u32); 2] = [("<|im_start|>", 50257), ("<|im_end|>", 50258)];

impl Tokenizer {
    /// `<|endoftext|>`, which separates documents and ends generation.
    pub const END_OF_TEXT: u32 = 50256;
    /// Number of GPT-2 token ids (the last is end-of-text).
    pub const VOCAB_SIZE: usize = 50257;

    /// The GPT-2 tokenizer (built once per process, ~0.1 s).
    pub fn gpt2() -> Self {
        Self {
            bpe: tiktoken_rs::r50k_base_singleton(),
            chatml: false,
        }
    }

    /// GPT-2's tokenizer with ChatML's `<|im_start|>` (50257) and `<|im_end|>` (50258) added:
    /// in text they are always those single tokens, as added tokens are in Hugging Face
    /// tokenizers.
    pub fn gpt2_chatml() -> Self {
        Self {
            chatml: true,
            ..Self::gpt2()
        }
    }

    /// Whether the ChatML tokens are part of the vocabulary.
    pub fn has_chatml(&self) -> bool {
        self.chatml
    }

    /// Number of token ids: 50257, or 50259 with the ChatML tokens.
    pub fn vocab_size(&self) -> usize {
        match self.chatml {
            false => Self::VOCAB_SIZE,
            true => Self::VOCAB_SIZE + CHATML_TOKENS.len(),
        }
    }

    /// Token ids of `text`. `<|endoftext|>` in the text is encoded as plain text; the ChatML
    /// tokens, where the vocabulary has them, as themselves.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        if !self.chatml {
            return self.bpe.encode_ordinary(text);
        }
        let mut ids = Vec::new();
        let mut rest = text;
        while let Some((at, token, id)) = CHATML_TOKENS
            .iter()
            .filter_map(|&(token, id)| rest.find(token).map(|at| (at, token, id)))
            .min_by_key(|&(at, _, _)| at)
        {
            ids.extend(self.bpe.encode_ordinary(&rest[..at]));
            ids.push(id);
            rest = &rest[at + token.len()..];
        }
        ids.extend(self.bpe.encode_ordinary(rest));
        ids
    }

    /// The bytes that `ids` stand for (possibly ending inside a UTF-8 character).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for run in ids.split_inclusive(|&id| self.added_token(id).is_some()) {
            let (plain, added) = match run.split_last() {
                Some((&last, head)) => match self.added_token(last) {
                    Some(token) => (head, Some(token)),
                    None => (run, None),
                },
                None => (run, None),
            };
            bytes.extend(self.bpe.decode_bytes(plain).map_err(|e| {
                ArcaneError::InvalidInput(format!(
                    "cannot decode token ids: {e}; GPT-2 ids are below {}",
                    self.vocab_size()
                ))
            })?);
            bytes.extend(added.unwrap_or_default().as_bytes());
        }
        Ok(bytes)
    }

    /// The text of an added (ChatML) token id.
    fn added_token(&self, id: u32) -> Option<&'static str> {
        CHATML_TOKENS
            .iter()
            .find(|&&(_, i)| self.chatml && i == id)
            .map(|&(token, _)| token)
    }

    /// The id of `token` if it is one token: `<|endoftext|>` or a ChatML token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        if token == "<|endoftext|>" {
            return Some(Self::END_OF_TEXT);
        }
        CHATML_TOKENS
            .iter()
            .find(|&&(t, _)| self.chatml && t == token)
            .map(|&(_, id)| id)
    }

    /// The text of `ids`; invalid UTF-8 (a character cut between tokens) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_gpt2_ids_and_round_trip() {
        let tok = Tokenizer::gpt2();
        assert_eq!(tok.encode("Hello world"), vec![15496, 995]);
        assert_eq!(tok.encode("hello world"), vec![31373, 995]);
        let text = "naïve café 😀 <|endoftext|>";
        assert_eq!(tok.decode(&tok.encode(text)).unwrap(), text);
    }

    #[test]
    fn chatml_tokens_are_single_ids_only_when_added() {
        let text = "<|im_start|>user\nhi<|im_end|>\n";
        let chat = Tokenizer::gpt2_chatml();
        let ids = chat.encode(text);
        assert_eq!(ids[0], 50257);
        assert_eq!(ids.iter().filter(|&&id| id == 50258).count(), 1);
        assert_eq!(chat.decode(&ids).unwrap(), text);
        assert_eq!(chat.vocab_size(), 50259);
        let plain = Tokenizer::gpt2().encode(text);
        assert!(plain.iter().all(|&id| id < 50257));
        assert!(Tokenizer::gpt2().decode(&[50257]).is_err());
    }

    #[test]
    fn out_of_range_ids_are_an_error() {
        assert!(Tokenizer::gpt2().decode(&[60000]).is_err());
    }
}
