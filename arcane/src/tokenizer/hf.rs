//! Hugging Face `tokenizer.json` files (Llama, Mistral, Qwen, GPT-2, ... as `save_pretrained`
//! writes them), read with Hugging Face's own `tokenizers` crate so that the ids are exactly
//! those of `transformers`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::TokenizerConfig;
use super::special::SpecialTokensPolicy;
use crate::error::{ArcaneError, Result};

/// Names that tokenizers commonly give their begin-of-sequence token, most common first.
const BOS_NAMES: [&str; 3] = ["<s>", "<|begin_of_text|>", "<bos>"];
/// Names that tokenizers commonly give their end-of-sequence token, most common first.
const EOS_NAMES: [&str; 4] = ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"];

/// A tokenizer read from a `tokenizer.json`.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    path: PathBuf,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    /// What `encode(text, true)` adds, and which file decided it.
    policy: SpecialTokensPolicy,
    /// The `tokenizer_config.json` beside the file (defaults where there is none).
    config: Arc<TokenizerConfig>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HfTokenizer({}, {} tokens)",
            self.path.display(),
            self.vocab_size
        )
    }
}

impl HfTokenizer {
    /// Reads `path` (a `tokenizer.json`) and the `tokenizer_config.json` beside it, if any.
    /// Begin- and end-of-sequence tokens are those `tokenizer_config.json` names, else found by
    /// their usual names; [`Self::with_special_ids`] overrides them from a model's
    /// `config.json`. The special tokens that prompts get are those of `tokenizer.json`'s
    /// post-processor, unless `tokenizer_config.json` sets `add_bos_token` / `add_eos_token`
    /// (see [`SpecialTokensPolicy`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ArcaneError::io(path, e))?;
        // The tokenizers crate panics on some malformed files (an `expect` in its decoder
        // deserializer): such a panic is this file's error, not a crash.
        let parsed = quietly(|| tokenizers::Tokenizer::from_bytes(&bytes))
            .unwrap_or_else(|panic| Err(panic.into()));
        let inner = parsed.map_err(|e| {
            ArcaneError::format(
                path,
                format!(
                    "not a Hugging Face tokenizer file ({e}); use the tokenizer.json that came with the model"
                ),
            )
        })?;
        // Added tokens may sit inside the model's vocabulary or after it: the size is the
        // largest id plus one, not the number of entries.
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
        if vocab_size == 0 {
            return Err(ArcaneError::format(
                path,
                "the tokenizer has an empty vocabulary",
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let config = TokenizerConfig::from_dir(dir)?;
        let named = |name: &str| config.token(name).and_then(|t| inner.token_to_id(t));
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = named("bos_token").or_else(|| find(&BOS_NAMES));
        let eos = named("eos_token").or_else(|| find(&EOS_NAMES));
        let mut inner = inner;
        // A post-processor naming a token it does not define panics inside the tokenizers
        // crate on the first encode: that is this file's error too.
        let policy = quietly(|| SpecialTokensPolicy::apply(&mut inner, &config))
            .unwrap_or_else(Err)
            .map_err(|message| {
                ArcaneError::format(
                    path,
                    format!(
                        "cannot add the tokenizer's special tokens ({message}); use the \
                         tokenizer.json that came with the model"
                    ),
                )
            })?;
        Ok(Self {
            inner: Arc::new(inner),
            path: path.to_path_buf(),
            vocab_size,
            bos,
            eos,
            policy,
            config: Arc::new(config),
        })
    }

    /// The same tokenizer with begin- and end-of-sequence ids from the model's config, where
    /// it names them.
    pub fn with_special_ids(mut self, bos: Option<u32>, eos: Option<u32>) -> Self {
        self.bos = bos.or(self.bos);
        self.eos = eos.or(self.eos);
        self
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token ids: the largest id plus one.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The begin-of-sequence id, if the tokenizer has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence id, if the tokenizer has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The special tokens that `encode(text, true)` adds, and why.
    pub fn special_tokens_policy(&self) -> &SpecialTokensPolicy {
        &self.policy
    }

    /// The `tokenizer_config.json` read beside the file (defaults where there was none).
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// The id of `token` if it is a single token of the vocabulary (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of token `id` as the vocabulary stores it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Token ids of `text`; with `special`, the special tokens the tokenizer's template adds
    /// (Llama: `<s>` in front), as `tokenizer(text)` does in transformers.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let encoded = std::panic::catch_unwind(|| self.inner.encode(text, special))
            .unwrap_or_else(|panic| Err(panic_message(panic).into()));
        let encoding = encoded.map_err(|e| {
            ArcaneError::InvalidInput(format!(
                "the tokenizer {} cannot encode this text: {e}",
                self.path.display()
            ))
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(ArcaneError::InvalidInput(format!(
                "cannot decode token id {bad}: the tokenizer {} has {} tokens",
                self.path.display(),
                self.vocab_size
            )));
        }
        let decoded = std::panic::catch_unwind(|| self.inner.decode(ids, false))
            .unwrap_or_else(|panic| Err(panic_message(panic).into()));
        decoded.map_err(|e| {
            ArcaneError::InvalidInput(format!(
                "the tokenizer {} cannot decode these ids: {e}",
                self.path.display()
            ))
        })
    }
}

/// Runs `f` with panics caught and not printed (they become the `Err` message).
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(panic_message)
}

/// The message of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    format!("the tokenizers library failed: {text}")
}
