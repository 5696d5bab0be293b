//! GPT-2's byte-level BPE (tiktoken's `r50k_base`, embedded in tiktoken-rs, no download).
//!
//! Text exists only at the edges: everything else in Arcane works on token ids.

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

/// Turns a stream of token ids into text pieces, holding back bytes of a UTF-8 character that
/// a later token completes, so streamed output never shows a broken character.
#[derive(Debug)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing pending.
    pub fn new(tokenizer: Tokenizer) -> Self {
        Self {
            tokenizer,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.pending.extend(self.tokenizer.decode_bytes(&[id])?);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end waits; a truly invalid byte is let through.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        Ok(text)
    }

    /// Whatever is still pending, with invalid bytes replaced.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
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
    fn streaming_never_splits_a_character() {
        let tok = Tokenizer::gpt2();
        let text = "emoji 😀 and ünïcödé";
        let mut stream = StreamDecoder::new(tok);
        let mut out = String::new();
        for id in tok.encode(text) {
            let piece = stream.push(id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "broken character in {piece:?}");
            out.push_str(&piece);
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
    }

    #[test]
    fn out_of_range_ids_are_an_error() {
        assert!(Tokenizer::gpt2().decode(&[60000]).is_err());
    }
}
