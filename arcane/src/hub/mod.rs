//! Models from the Hugging Face Hub by name: `ORG/NAME[@REVISION]` (a branch, tag or
//! commit) resolved to a folder of the local cache that [`crate::load_model`] reads.
//!
//! The cache is Python's (`huggingface_hub`): same folder, same layout ([`cache`]), same
//! environment variables ([`HubOptions::from_env`]), so a model downloaded by either is used
//! by the other without a second download. With `HF_HUB_OFFLINE=1` nothing is requested and
//! a missing file is reported with the cache folder it was looked for in.
//!
//! Downloads need the `hub` cargo feature (on by default; it adds a blocking HTTP client,
//! no async runtime). Without it, only models already in the cache resolve.
//!
//! ```no_run
//! use arcane::hub::{resolve, HubOptions, NoProgress};
//!
//! let options = HubOptions::from_env()?;
//! let model = resolve("openai-community/gpt2@main", &options, &mut NoProgress)?;
//! println!("{} is commit {} in {}", model.source.repo, model.source.commit, model.dir.display());
//! # Ok::<(), arcane::ArcaneError>(())
//! ```

pub mod cache;
#[cfg(feature = "hub")]
mod client;
#[cfg(feature = "hub")]
mod download;
pub mod files;
#[cfg(feature = "hub")]
mod lock;
mod offline;
mod options;
mod repo_id;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub use cache::RepoCache;
pub use options::{HubOptions, DEFAULT_ENDPOINT};
pub use repo_id::{
    encode_path, encode_segment, is_commit, looks_like_repo_id, RepoSpec, DEFAULT_REVISION,
};

/// Which Hub model a folder came from: recorded in run configs so that a fine-tune says
/// exactly which base it started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubSource {
    /// `ORG/NAME`.
    pub repo: String,
    /// The revision asked for (`main` when none was).
    pub revision: String,
    /// The commit it resolved to (40 hex digits).
    pub commit: String,
}

/// A resolved Hub model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The snapshot folder, `CACHE/models--ORG--NAME/snapshots/<commit>`.
    pub dir: PathBuf,
    /// Repository, revision and commit.
    pub source: HubSource,
    /// Whether it came from the cache alone (offline mode, a pinned commit already cached,
    /// or a Hub that could not be reached), without asking the Hub for the latest commit.
    pub from_cache_only: bool,
}

/// Told about each file download. Every method has a do-nothing default.
pub trait Progress {
    /// A download of `file` (`total` bytes, `done` of them already there from an
    /// interrupted attempt) begins.
    fn start(&mut self, _file: &str, _total: u64, _done: u64) {}
    /// `bytes` more arrived.
    fn advance(&mut self, _bytes: u64) {}
    /// The download of `file` ended (completely or not).
    fn finish(&mut self, _file: &str) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Resolves `ORG/NAME[@REVISION]` to a complete snapshot folder in the cache, downloading
/// what is missing: `config.json`, the safetensors weights (all shards of a sharded
/// checkpoint) and the tokenizer, generation and chat-template files the repository has.
///
/// A commit sha already complete in the cache, and everything in offline mode, resolves
/// without a request. Errors say how to fix them (token for gated repositories, the cache
/// folder and missing file offline, conversion for `pytorch_model.bin`-only repositories).
pub fn resolve(
    spec: &str,
    options: &HubOptions,
    progress: &mut dyn Progress,
) -> Result<ResolvedModel> {
    let spec = RepoSpec::parse(spec)?;
    let cache = RepoCache::new(&options.cache_dir, &spec.folder_name());
    if options.offline {
        return offline::resolve(&spec, &cache, "HF_HUB_OFFLINE is set");
    }
    if is_commit(spec.revision()) {
        if let Ok(model) = offline::resolve(&spec, &cache, "") {
            return Ok(model);
        }
    }
    online(&spec, &cache, options, progress)
}

#[cfg(feature = "hub")]
fn online(
    spec: &RepoSpec,
    cache: &RepoCache,
    options: &HubOptions,
    progress: &mut dyn Progress,
) -> Result<ResolvedModel> {
    download::resolve(spec, cache, options, progress)
}

#[cfg(not(feature = "hub"))]
fn online(
    spec: &RepoSpec,
    cache: &RepoCache,
    _options: &HubOptions,
    _progress: &mut dyn Progress,
) -> Result<ResolvedModel> {
    offline::resolve(
        spec,
        cache,
        "this build of Arcane cannot download (cargo feature `hub` is off)",
    )
}
