//! `manifest.json` of a prepared dataset: what was read, how many tokens each split holds, and
//! the shard files in order. `prepare` writes it; training and evaluation read it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::io::Versioned;

/// File name of a prepared dataset's manifest.
pub const MANIFEST: &str = "manifest.json";
/// The `format` field of a dataset manifest.
pub const FORMAT: &str = "arcane-data";
/// Format and version of `manifest.json`.
pub const DATA_MANIFEST: Versioned = Versioned {
    format: FORMAT,
    version: 1,
    what: "Arcane data manifest",
    remedy: "prepare the data again with `arcane-cli prepare`",
};

/// One input file in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Its path as given.
    pub path: String,
    /// Uncompressed bytes.
    pub bytes: u64,
    /// Documents read from it.
    pub documents: usize,
    /// Tokens it produced (end-of-text separators included).
    pub tokens: usize,
}

/// `manifest.json` of a prepared dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Manifest version (1).
    pub version: u32,
    /// The tokenizer that produced the ids.
    pub tokenizer: String,
    /// Documents in all.
    pub documents: usize,
    /// Tokens in all.
    pub tokens: usize,
    /// Tokens in the training split.
    pub train_tokens: usize,
    /// Tokens in the validation split.
    pub val_tokens: usize,
    /// Training shard file names, in order.
    pub train_shards: Vec<String>,
    /// Validation shard file names, in order.
    pub val_shards: Vec<String>,
    /// The inputs, in the order they were read.
    pub sources: Vec<SourceFile>,
}

impl DataManifest {
    /// Reads `DIR/manifest.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Ok(None);
        }
        DATA_MANIFEST.read(&path).map(Some)
    }
}
