//! Resolving online: the revision's commit and file list, then every needed file into the
//! cache (`blobs/<etag>.incomplete` → `blobs/<etag>` → `snapshots/<commit>/<path>`).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::cache::RepoCache;
use super::client::{Client, Failure};
use super::files;
use super::lock;
use super::offline;
use super::repo_id::{is_commit, RepoSpec};
use super::{HubOptions, HubSource, Progress, ResolvedModel};
use crate::error::{ArcaneError, Result};

/// Downloads what `spec` needs (files already in the cache are not requested) and returns
/// the snapshot folder. When the Hub cannot be reached at all, a complete cached snapshot of
/// the revision is used instead, as Python does (`from_cache_only` says so).
pub fn resolve(
    spec: &RepoSpec,
    cache: &RepoCache,
    options: &HubOptions,
    progress: &mut dyn Progress,
) -> Result<ResolvedModel> {
    let label = offline::label(spec);
    let revision = spec.revision();
    let client = Client::new(options, &spec.repo, &label);
    let info = match client.repo_info(revision) {
        Ok(info) => info,
        Err(Failure::Unreachable(why)) => {
            return offline::resolve(spec, cache, "the Hub cannot be reached")
                .map_err(|_| Failure::Unreachable(why).into_error(&label, options));
        }
        Err(failure) => return Err(failure.into_error(&label, options)),
    };
    let commit = info.sha;
    let plan = files::plan(&info.files, &label)?;
    let fetch = |path: &str, progress: &mut dyn Progress| {
        fetch_file(&client, cache, &commit, path, progress)
            .map_err(|f| f.into_error(&label, options))
    };
    for path in &plan.first {
        if !fetch(path, progress)? {
            return Err(ArcaneError::hub(
                &label,
                format!("the repository lists {path} but the Hub has no such file at {commit}"),
            ));
        }
    }
    if plan.sharded {
        let index = cache.snapshot_dir(&commit).join(files::INDEX);
        for shard in files::shards(&index)? {
            if !fetch(&shard, progress)? {
                return Err(ArcaneError::hub(
                    &label,
                    format!(
                        "{} names the shard {shard}, which is not on the Hub",
                        files::INDEX
                    ),
                ));
            }
        }
    }
    for path in &plan.optional {
        fetch(path, progress)?;
    }
    // Like Python: a branch or tag gets a ref; a commit needs none.
    if !is_commit(revision) {
        cache.write_ref(revision, &commit)?;
    }
    Ok(ResolvedModel {
        dir: cache.snapshot_dir(&commit),
        source: HubSource {
            repo: spec.repo.clone(),
            revision: revision.to_string(),
            commit,
        },
        from_cache_only: false,
    })
}

/// Puts `path` at `commit` into the snapshot, downloading its blob unless the cache has it.
/// `Ok(false)` when the Hub says the file does not exist (recorded under `.no_exist/`).
fn fetch_file(
    client: &Client,
    cache: &RepoCache,
    commit: &str,
    path: &str,
    progress: &mut dyn Progress,
) -> Result<bool, Failure> {
    if cache.has_file(commit, path) {
        return Ok(true);
    }
    let Some(meta) = client.file_meta(commit, path)? else {
        cache.mark_absent(commit, path).map_err(Failure::Refused)?;
        return Ok(false);
    };
    let blob = cache.blob(&meta.etag);
    let complete = || std::fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == meta.size);
    // Another process may be downloading this blob: wait for it, then look again.
    let _lock = match complete() {
        true => None,
        false => Some(lock::exclusive(&cache.lock_file(&meta.etag)).map_err(Failure::Refused)?),
    };
    if !complete() {
        let part = cache.incomplete(&meta.etag);
        let folder = part.parent().unwrap_or(&cache.root);
        std::fs::create_dir_all(folder)
            .map_err(|e| Failure::Refused(ArcaneError::io(folder, e)))?;
        client
            .fetch(&meta, &part, path, progress)
            .map_err(Failure::Refused)?;
        verify_sha256(&part, &meta.etag, path).map_err(Failure::Refused)?;
        std::fs::rename(&part, &blob).map_err(|e| Failure::Refused(ArcaneError::io(&blob, e)))?;
    }
    cache
        .link(commit, path, &meta.etag)
        .map_err(Failure::Refused)?;
    Ok(true)
}

/// For an LFS file the ETag is the sha256 of its contents (64 hex digits): a download that
/// does not hash to it is deleted, so a corrupt or mixed-up file is never used.
fn verify_sha256(file: &Path, etag: &str, name: &str) -> Result<()> {
    if etag.len() != 64 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let mut hasher = Sha256::new();
    let mut reader = std::fs::File::open(file).map_err(|e| ArcaneError::io(file, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| ArcaneError::io(file, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != etag.to_ascii_lowercase() {
        let _ = std::fs::remove_file(file);
        return Err(ArcaneError::format(
            file,
            format!(
                "the download of {name} has sha256 {got}, not {etag} as the Hub announced; it \
                 was deleted, run the command again"
            ),
        ));
    }
    Ok(())
}
