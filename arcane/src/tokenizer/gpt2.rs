//! GPT-2's byte-level BPE (tiktoken's `r50k_base`, embedded in tiktoken-rs, no download): the
//! tokenizer of every Arcane model and of GPT-2 checkpoints.

use tiktoken_rs::CoreBPE;

use crate::error::{ArcaneError, Result};

/// The GPT-2 tokenizer.
#[derive(Clone, Copy)]
pub struct Tokenizer {
    bpe: &'static CoreBPE,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer(gpt2 r50k_base)")
    }
}

impl Tokenizer {
    /// `<|endoftext|>`, which separates documents and ends generation.
    pub const END_OF_TEXT: u32 = 50256;
    /// Number of GPT-2 token ids (the last is end-of-text).
    pub const VOCAB_SIZE: usize = 50257;

    /// The GPT-2 tokenizer (built once per process, ~0.1 s).
    pub fn gpt2() -> Self {
        Self {
            bpe: tiktoken_rs::r50k_base_singleton(),
        }
    }

    /// Token ids of `text`. Special-token strings in the text are encoded as plain text.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// The bytes that `ids` stand for (possibly ending inside a UTF-8 character).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        self.bpe.decode_bytes(ids).map_err(|e| {
            ArcaneError::InvalidInput(format!(
                "cannot decode token ids: {e}; GPT-2 ids are below {}",
                Self::VOCAB_SIZE
            ))
        })
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
    fn out_of_range_ids_are_an_error() {
        assert!(Tokenizer::gpt2().decode(&[60000]).is_err());
    }
}
