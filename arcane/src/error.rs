//! Typed errors of the library.
//!
//! Every variant carries enough context to tell the user what went wrong *and* what to do about
//! it: the file, the tensor, the expected and found values. Tensor math itself stays infallible
//! (shape invariants are `assert!`ed); only I/O, formats and user-supplied configuration fail.

use std::path::PathBuf;

/// Errors returned by the Arcane library.
#[derive(Debug, thiserror::Error)]
pub enum ArcaneError {
    /// A file could not be read or written. The message includes the I/O error, which is
    /// therefore not also reported as the error's `source()`: error chains printed with
    /// anyhow's `{:#}` would otherwise say it twice ("x: No such file: No such file").
    #[error("{path}: {error}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },

    /// A model configuration is inconsistent (for example `d_model` not divisible by `n_heads`).
    #[error("invalid config: {0}")]
    InvalidConfig(String),

    /// A file exists but its contents are not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A checkpoint tensor is missing, misshaped or of an unsupported dtype.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
        /// What was expected and what was found.
        message: String,
    },

    /// A Hugging Face architecture that Arcane cannot map onto its model.
    #[error("{path}: unsupported architecture {found:?}; Arcane loads GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GemmaForCausalLM and Phi3ForCausalLM checkpoints")]
    UnsupportedArchitecture {
        /// The `config.json` that named it.
        path: PathBuf,
        /// What the file declared.
        found: String,
    },

    /// A token id does not fit the model's vocabulary.
    #[error(
        "token id {id} at position {position} is out of range for a vocabulary of {vocab_size}"
    )]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Its index in the input.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },

    /// An input sequence does not fit the model's context window.
    #[error("{what} has {len} tokens but the model's context is {max_seq_len} tokens; {hint}")]
    ContextTooLong {
        /// Which input (for example "the prompt").
        what: String,
        /// Its length in tokens.
        len: usize,
        /// The model's context length.
        max_seq_len: usize,
        /// How to fix it.
        hint: String,
    },

    /// Invalid user input that is not a file (an empty text, a bad sampling parameter, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// A model could not be had from the Hugging Face Hub or its cache: the Hub refused it
    /// (gated, private, no such repository, revision or file), could not be reached, or
    /// offline mode found a file missing from the cache. The message says how to fix it.
    #[error("{repo}: {message}")]
    Hub {
        /// The repository, `ORG/NAME[@REVISION]`.
        repo: String,
        /// What went wrong and what to do.
        message: String,
    },

    /// A chat template refused the conversation with `raise_exception(message)` (for example
    /// roles that do not alternate user/assistant): the template's own message.
    #[error("the chat template refused this conversation: {message}")]
    ChatTemplate {
        /// The message the template raised.
        message: String,
    },

    /// A chat template that cannot be compiled or rendered (a syntax error, a filter or
    /// method Arcane does not provide).
    #[error("chat template {origin}: {message}")]
    Template {
        /// Where the template came from (a file, or `tokenizer_config.json`'s entry).
        origin: String,
        /// What went wrong, with the template line where known.
        message: String,
    },
}

impl ArcaneError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }

    /// A format error for `path` with a message that says how to fix it.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl ArcaneError {
    /// A Hub error about `repo`.
    pub fn hub(repo: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Hub {
            repo: repo.into(),
            message: message.into(),
        }
    }
}

/// Result type of the library.
pub type Result<T, E = ArcaneError> = std::result::Result<T, E>;
