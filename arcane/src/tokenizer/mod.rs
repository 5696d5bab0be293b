//! Tokenizers. Text exists only at the edges: everything else in Arcane works on token ids.
//!
//! Arcane models and GPT-2 checkpoints use GPT-2's BPE ([`Tokenizer`], tiktoken's `r50k_base`,
//! embedded). Other models bring a Hugging Face `tokenizer.json` ([`HfTokenizer`]).
//! [`ModelTokenizer`] is either; `checkpoint::load_tokenizer` picks the one a model directory
//! names and checks it against the model's vocabulary.
//!
//! Special tokens: [`ModelTokenizer::encode_prompt`] adds what `tokenizer(text)` adds in
//! transformers ([`SpecialTokensPolicy`]); [`ModelTokenizer::encode_chat`] adds nothing, for
//! conversations a chat template rendered (the template writes its own BOS).

mod config;
mod gpt2;
mod hf;
mod special;

use std::path::Path;

pub use config::{TemplateField, TokenizerConfig, SPECIAL_TOKEN_NAMES, TOKENIZER_CONFIG_FILE};
pub use gpt2::{Tokenizer, CHATML_TOKENS};
pub use hf::HfTokenizer;
pub use special::SpecialTokensPolicy;

use crate::error::{ArcaneError, Result};

/// How a model manifest names GPT-2's tokenizer.
pub const GPT2_NAME: &str = "gpt2";
/// How a model manifest names GPT-2's tokenizer with ChatML's two tokens added.
pub const GPT2_CHATML_NAME: &str = "gpt2-chatml";
/// File name of a Hugging Face tokenizer in a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Files copied along with a `tokenizer.json` when a model is saved elsewhere.
pub const COMPANION_FILES: [&str; 3] = [
    TOKENIZER_CONFIG_FILE,
    "chat_template.jinja",
    "chat_template.json",
];

/// The tokenizer of a model: GPT-2's, or one read from a `tokenizer.json`.
#[derive(Clone, Debug)]
pub enum ModelTokenizer {
    /// GPT-2's BPE (50257 tokens).
    Gpt2(Tokenizer),
    /// A Hugging Face tokenizer file.
    HuggingFace(HfTokenizer),
}

impl From<Tokenizer> for ModelTokenizer {
    fn from(tokenizer: Tokenizer) -> Self {
        Self::Gpt2(tokenizer)
    }
}

impl ModelTokenizer {
    /// GPT-2's tokenizer.
    pub fn gpt2() -> Self {
        Self::Gpt2(Tokenizer::gpt2())
    }

    /// A Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self::HuggingFace(HfTokenizer::from_file(path)?))
    }

    /// A tokenizer built into Arcane, by its manifest name (`gpt2`, `gpt2-chatml`).
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            GPT2_NAME => Some(Self::Gpt2(Tokenizer::gpt2())),
            GPT2_CHATML_NAME => Some(Self::Gpt2(Tokenizer::gpt2_chatml())),
            _ => None,
        }
    }

    /// A short description for messages and manifests: `gpt2`, `gpt2-chatml`, or the file and
    /// its size.
    pub fn name(&self) -> String {
        match self {
            Self::Gpt2(t) => builtin_name(t).into(),
            Self::HuggingFace(t) => format!("{} ({} tokens)", t.path().display(), t.vocab_size()),
        }
    }

    /// What identifies the token ids this tokenizer writes, for manifests that must match a
    /// model's (a reward model and its policy): `gpt2` / `gpt2-chatml`, `gpt2` for a
    /// `tokenizer.json` that encodes as GPT-2's does, else `tokenizer.json sha256:` and the
    /// first 16 hex digits of the file's hash (two copies of one tokenizer match, any other
    /// tokenizer does not).
    pub fn identity(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let t = match self {
            Self::Gpt2(t) => return Ok(builtin_name(t).into()),
            Self::HuggingFace(t) => t,
        };
        let probe = "Hello world, 2 tokenizers: ünïcödé.";
        let gpt2 = Tokenizer::gpt2();
        if t.vocab_size() == gpt2.vocab_size() && t.encode(probe, false)? == gpt2.encode(probe) {
            return Ok(GPT2_NAME.into());
        }
        let bytes = std::fs::read(t.path()).map_err(|e| ArcaneError::io(t.path(), e))?;
        let hash = format!("{:x}", Sha256::digest(&bytes));
        Ok(format!("{TOKENIZER_FILE} sha256:{}", &hash[..16]))
    }

    /// Number of token ids (the largest id plus one).
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(t) => t.vocab_size(),
            Self::HuggingFace(t) => t.vocab_size(),
        }
    }

    /// The special tokens [`Self::encode_prompt`] adds, and which file decided.
    pub fn special_tokens_policy(&self) -> SpecialTokensPolicy {
        match self {
            Self::Gpt2(_) => SpecialTokensPolicy::gpt2(),
            Self::HuggingFace(t) => t.special_tokens_policy().clone(),
        }
    }

    /// The id of `token` if it is one token of the vocabulary (special and added included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Self::Gpt2(t) => t.token_to_id(token),
            Self::HuggingFace(t) => t.token_to_id(token),
        }
    }

    /// The tokenizer's `tokenizer_config.json` (Hugging Face tokenizers that have one).
    pub fn config(&self) -> Option<&TokenizerConfig> {
        match self {
            Self::Gpt2(_) => None,
            Self::HuggingFace(t) => t.config().path.as_ref().map(|_| t.config()),
        }
    }

    /// The named special tokens a chat template sees (`("bos_token", "<s>")`, ...): those of
    /// `tokenizer_config.json`; for GPT-2's tokenizer `<|endoftext|>` as BOS, EOS and UNK, as
    /// transformers' GPT-2 tokenizer names it.
    pub fn special_tokens(&self) -> Vec<(String, String)> {
        match self {
            Self::Gpt2(_) => ["bos_token", "eos_token", "unk_token"]
                .iter()
                .map(|name| (name.to_string(), "<|endoftext|>".to_string()))
                .collect(),
            Self::HuggingFace(t) => t.config().special_tokens.clone(),
        }
    }

    /// Whether ChatML's `<|im_start|>` and `<|im_end|>` are single tokens of this vocabulary.
    pub fn has_chatml(&self) -> bool {
        CHATML_TOKENS
            .iter()
            .all(|(token, _)| self.token_to_id(token).is_some())
    }

    /// This tokenizer with ChatML's tokens, as a chat fine-tune asks for them: GPT-2's gets
    /// them on rows 50257 and 50258 (free in Arcane's vocabulary padded to 50304). A Hugging
    /// Face tokenizer must already have them (it brings its own chat template otherwise).
    pub fn with_chatml(&self) -> Result<Self> {
        match self {
            Self::Gpt2(_) => Ok(Self::Gpt2(Tokenizer::gpt2_chatml())),
            Self::HuggingFace(_) if self.has_chatml() => Ok(self.clone()),
            Self::HuggingFace(t) => Err(ArcaneError::InvalidInput(format!(
                "the tokenizer {} has no <|im_start|>/<|im_end|> tokens; Arcane adds ChatML's tokens \
                 only to GPT-2's tokenizer. Use the model's own chat template instead",
                t.path().display()
            ))),
        }
    }

    /// The begin-of-sequence id a Hugging Face tokenizer names (Llama's `<s>`); GPT-2 has none
    /// (its `<|endoftext|>` is [`Self::document_separator`]).
    pub fn bos(&self) -> Option<u32> {
        match self {
            Self::Gpt2(_) => None,
            Self::HuggingFace(t) => t.bos(),
        }
    }

    /// The end-of-sequence id, which stops generation (GPT-2: `<|endoftext|>`).
    pub fn eos(&self) -> Option<u32> {
        match self {
            Self::Gpt2(_) => Some(Tokenizer::END_OF_TEXT),
            Self::HuggingFace(t) => t.eos(),
        }
    }

    /// The id put in front of every document of prepared data: GPT-2's `<|endoftext|>` (as in
    /// GPT-2's training data), or a tokenizer's begin-of-sequence token (Llama's `<s>`), else
    /// its end-of-sequence token.
    pub fn document_separator(&self) -> Option<u32> {
        match self {
            Self::Gpt2(_) => Some(Tokenizer::END_OF_TEXT),
            Self::HuggingFace(t) => t.bos().or(t.eos()),
        }
    }

    /// Token ids of `text`, without special tokens (data, scoring).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Gpt2(t) => Ok(t.encode(text)),
            Self::HuggingFace(t) => t.encode(text, false),
        }
    }

    /// Token ids of a prompt, with the special tokens the tokenizer's template adds (Llama's
    /// `<s>`), as `tokenizer(text)` gives them in transformers. GPT-2 adds none.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Gpt2(t) => Ok(t.encode(text)),
            Self::HuggingFace(t) => t.encode(text, true),
        }
    }

    /// Token ids of a conversation a chat template rendered: no special tokens added (the
    /// template wrote them), special-token text in it encoded as those tokens, as transformers'
    /// `apply_chat_template` does (`add_special_tokens=False`).
    pub fn encode_chat(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Gpt2(t) => Ok(t.encode(text)),
            Self::HuggingFace(t) => t.encode(text, false),
        }
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Self::Gpt2(t) => t.decode(ids),
            Self::HuggingFace(t) => t.decode(ids),
        }
    }

    /// Writes what a model directory `dir` needs to name this tokenizer in its manifest, and
    /// returns that name: `gpt2`, or `tokenizer.json` (the file, copied into `dir`).
    pub fn save_into(&self, dir: &Path) -> Result<String> {
        match self {
            Self::Gpt2(t) => Ok(builtin_name(t).into()),
            Self::HuggingFace(t) => {
                let target = dir.join(TOKENIZER_FILE);
                let same = match (t.path().canonicalize(), target.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if !same {
                    let bytes =
                        std::fs::read(t.path()).map_err(|e| ArcaneError::io(t.path(), e))?;
                    crate::io::write_atomic(&target, &bytes)?;
                    // The files that travel with a tokenizer: its special tokens and switches,
                    // and the chat template (a model converted or fine-tuned keeps them).
                    let source_dir = t.path().parent().unwrap_or(Path::new("."));
                    for name in COMPANION_FILES {
                        let from = source_dir.join(name);
                        if from.is_file() {
                            let bytes =
                                std::fs::read(&from).map_err(|e| ArcaneError::io(&from, e))?;
                            crate::io::write_atomic(&dir.join(name), &bytes)?;
                        }
                    }
                }
                Ok(TOKENIZER_FILE.into())
            }
        }
    }

    /// Refuses a tokenizer that can produce ids outside a model's vocabulary of `vocab_size`
    /// (the model in `model_dir`): they were not made for each other. A model may have more
    /// rows than its tokenizer has tokens (GPT-2's 50257 padded to 50304).
    pub fn check_model(&self, vocab_size: usize, model_dir: &Path) -> Result<()> {
        if self.vocab_size() <= vocab_size {
            return Ok(());
        }
        let hint = match self {
            Self::Gpt2(_) => format!(
                "the model was trained with another tokenizer: put that tokenizer's {TOKENIZER_FILE} \
                 into the model folder"
            ),
            Self::HuggingFace(_) => {
                "use the tokenizer.json that came with this model".to_string()
            }
        };
        Err(ArcaneError::format(
            model_dir,
            format!(
                "the model's vocabulary of {vocab_size} does not fit its tokenizer {}, which has {} tokens; {hint}",
                self.name(),
                self.vocab_size()
            ),
        ))
    }
}

/// The manifest name of GPT-2's tokenizer with or without ChatML.
fn builtin_name(t: &Tokenizer) -> &'static str {
    match t.has_chatml() {
        false => GPT2_NAME,
        true => GPT2_CHATML_NAME,
    }
}

/// Turns a stream of token ids into text pieces, holding back what a later token completes (a
/// UTF-8 character cut between GPT-2 tokens, a byte-fallback sequence of a Llama tokenizer),
/// so streamed output never shows a broken character.
#[derive(Debug)]
pub struct StreamDecoder {
    tokenizer: ModelTokenizer,
    /// GPT-2: bytes of an incomplete character.
    pending: Vec<u8>,
    /// Hugging Face: the ids so far; `ids[prefix..read]` is the text already shown, decoded
    /// again with each new id so that context-dependent decoders (SentencePiece's leading
    /// space) see the tokens in front of it.
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl StreamDecoder {
    /// A decoder with nothing pending.
    pub fn new(tokenizer: impl Into<ModelTokenizer>) -> Self {
        Self {
            tokenizer: tokenizer.into(),
            pending: Vec::new(),
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        match &self.tokenizer {
            ModelTokenizer::Gpt2(t) => {
                self.pending.extend(t.decode_bytes(&[id])?);
                let valid = match std::str::from_utf8(&self.pending) {
                    Ok(_) => self.pending.len(),
                    // An incomplete character at the end waits; a truly invalid byte goes through.
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    Err(_) => self.pending.len(),
                };
                let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                Ok(text)
            }
            ModelTokenizer::HuggingFace(t) => {
                self.ids.push(id);
                let shown = t.decode(&self.ids[self.prefix..self.read])?;
                let now = t.decode(&self.ids[self.prefix..])?;
                if now.len() <= shown.len() || now.ends_with('\u{FFFD}') {
                    return Ok(String::new());
                }
                let piece = now.get(shown.len()..).unwrap_or_default().to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                Ok(piece)
            }
        }
    }

    /// Whatever is still pending, with invalid bytes replaced.
    pub fn finish(&mut self) -> String {
        let text = match &self.tokenizer {
            ModelTokenizer::Gpt2(_) => String::from_utf8_lossy(&self.pending).into_owned(),
            ModelTokenizer::HuggingFace(t) => {
                let shown = t
                    .decode(&self.ids[self.prefix..self.read])
                    .unwrap_or_default();
                let now = t.decode(&self.ids[self.prefix..]).unwrap_or_default();
                now.get(shown.len()..).unwrap_or_default().to_string()
            }
        };
        self.pending.clear();
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn gpt2_fits_padded_vocabularies_only() {
        let tok = ModelTokenizer::gpt2();
        assert!(tok.check_model(50304, Path::new("m")).is_ok());
        assert!(tok.check_model(50257, Path::new("m")).is_ok());
        let err = tok
            .check_model(512, Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vocabulary of 512") && err.contains("tokenizer.json"),
            "{err}"
        );
    }
}
