//! The per-blob lock Python's `huggingface_hub` takes while it downloads
//! (`CACHE/.locks/models--ORG--NAME/<etag>.lock`, an exclusive `flock` through the `filelock`
//! package), taken the same way here, so that two downloads of one file — by two Arcane
//! processes, or by Arcane and Python — never write the same `.incomplete` file at once: the
//! second waits, then finds the blob complete.

use std::fs::File;
use std::path::Path;

use crate::error::{ArcaneError, Result};

/// Held until dropped (closing the file releases the lock).
pub struct BlobLock {
    _file: File,
}

/// Waits for and takes the exclusive lock on `path` (created if needed). Where `flock` does
/// not exist (not Unix) the file is only created: there, concurrent downloads of one file are
/// not guarded.
pub fn exclusive(path: &Path) -> Result<BlobLock> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ArcaneError::io(parent, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| ArcaneError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        loop {
            // SAFETY: `flock` on a file descriptor this function owns for the call's duration.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(ArcaneError::io(path, error));
            }
        }
    }
    Ok(BlobLock { _file: file })
}
