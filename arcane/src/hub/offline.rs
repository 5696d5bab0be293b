//! Resolving strictly from the cache: `refs/<revision>` (or the commit itself) and a
//! complete `snapshots/<commit>` folder. No request is made.

use super::cache::RepoCache;
use super::files;
use super::repo_id::{is_commit, RepoSpec};
use super::{HubSource, ResolvedModel};
use crate::error::{ArcaneError, Result};

/// The cached snapshot of `spec`, or an error naming the cache folder and the missing file;
/// `why` says why only the cache is used (for example "HF_HUB_OFFLINE is set").
pub fn resolve(spec: &RepoSpec, cache: &RepoCache, why: &str) -> Result<ResolvedModel> {
    let revision = spec.revision();
    let label = label(spec);
    let advice = "run once with network access (without HF_HUB_OFFLINE=1) to download it, \
                  or copy the model into the cache with Python's `huggingface_hub`";
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        cache.read_ref(revision).ok_or_else(|| {
            ArcaneError::hub(
                &label,
                format!(
                    "{why} and the cache has no {} (revision {revision:?} was never \
                     downloaded into {}); {advice}",
                    cache.ref_file(revision).display(),
                    cache.root.display()
                ),
            )
        })?
    };
    let dir = cache.snapshot_dir(&commit);
    if let Some(file) = files::missing(&dir)? {
        return Err(ArcaneError::hub(
            &label,
            format!(
                "{why} and {} is not in the cache (folder {}); {advice}",
                dir.join(&file).display(),
                cache.root.display()
            ),
        ));
    }
    Ok(ResolvedModel {
        dir,
        source: HubSource {
            repo: spec.repo.clone(),
            revision: revision.to_string(),
            commit,
        },
        from_cache_only: true,
    })
}

/// `ORG/NAME@REV`, as errors name a model.
pub fn label(spec: &RepoSpec) -> String {
    format!("{}@{}", spec.repo, spec.revision())
}
