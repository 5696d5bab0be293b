//! The Hugging Face cache layout, read and written exactly as Python's `huggingface_hub`
//! does (`file_download.py`), so a model fetched by either is found by the other:
//!
//! ```text
//! CACHE/models--ORG--NAME/
//!   blobs/<etag>                       file contents, named by their ETag
//!   blobs/<etag>.incomplete            a download in progress (never read as a file)
//!   snapshots/<commit>/<path>          relative symlink -> ../../blobs/<etag>
//!   refs/<revision>                    the commit a branch or tag pointed to (no newline)
//!   .no_exist/<commit>/<path>          empty: the file is known to be absent at that commit
//! CACHE/.locks/models--ORG--NAME/<etag>.lock   held while that blob downloads
//! ```

use std::path::{Path, PathBuf};

use crate::error::{ArcaneError, Result};

/// One repository's folder in the cache.
#[derive(Clone, Debug)]
pub struct RepoCache {
    /// `CACHE/models--ORG--NAME`.
    pub root: PathBuf,
}

impl RepoCache {
    /// The folder of the repository whose cache folder name is `folder_name`.
    pub fn new(cache_dir: &Path, folder_name: &str) -> Self {
        Self {
            root: cache_dir.join(folder_name),
        }
    }

    /// `blobs/<etag>`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    /// `blobs/<etag>.incomplete`: where a download goes until it is whole.
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{etag}.incomplete"))
    }

    /// `CACHE/.locks/models--ORG--NAME/<etag>.lock`: the lock held while the blob downloads
    /// (beside the repository folders, as Python places it).
    pub fn lock_file(&self, etag: &str) -> PathBuf {
        let folder = self.root.file_name().unwrap_or_default();
        let cache = self.root.parent().unwrap_or(Path::new("."));
        cache
            .join(".locks")
            .join(folder)
            .join(format!("{etag}.lock"))
    }

    /// `snapshots/<commit>`: the folder a resolved model is loaded from.
    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// `refs/<revision>` (a revision such as `refs/pr/1` nests folders, as in Python).
    pub fn ref_file(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    /// `.no_exist/<commit>/<path>`.
    pub fn no_exist(&self, commit: &str, path: &str) -> PathBuf {
        self.root.join(".no_exist").join(commit).join(path)
    }

    /// The commit `refs/<revision>` names, if the file exists.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.ref_file(revision)).ok()?;
        let commit = text.trim();
        (!commit.is_empty()).then(|| commit.to_string())
    }

    /// Writes `refs/<revision>` = `commit` (atomically; Python writes it without a newline).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        let path = self.ref_file(revision);
        if self.read_ref(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        create_parent(&path)?;
        crate::io::write_atomic(&path, commit.as_bytes())
    }

    /// Whether `snapshots/<commit>/<path>` is there and leads to a file (a symlink whose
    /// blob was deleted does not count).
    pub fn has_file(&self, commit: &str, path: &str) -> bool {
        self.snapshot_dir(commit).join(path).is_file()
    }

    /// Points `snapshots/<commit>/<path>` at `blobs/<etag>` with a relative symlink
    /// (`../../blobs/<etag>`, one more `../` per folder in `path`), replacing what was there.
    /// Where symlinks are not available the blob is copied, as Python does on Windows.
    pub fn link(&self, commit: &str, path: &str, etag: &str) -> Result<()> {
        let link = self.snapshot_dir(commit).join(path);
        create_parent(&link)?;
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(|e| ArcaneError::io(&link, e))?;
        }
        let depth = path.split('/').count() + 1;
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(etag);
        #[cfg(unix)]
        let linked = std::os::unix::fs::symlink(&target, &link);
        #[cfg(not(unix))]
        let linked = std::fs::copy(self.blob(etag), &link).map(|_| ());
        linked.map_err(|e| ArcaneError::io(&link, e))
    }

    /// Records that `path` does not exist at `commit` (an empty marker file).
    pub fn mark_absent(&self, commit: &str, path: &str) -> Result<()> {
        let marker = self.no_exist(commit, path);
        create_parent(&marker)?;
        std::fs::write(&marker, b"").map_err(|e| ArcaneError::io(&marker, e))
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| ArcaneError::io(parent, e)),
        None => Ok(()),
    }
}
