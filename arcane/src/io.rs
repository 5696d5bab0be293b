//! Files that survive crashes: atomic writes, directory syncs, clean-up of temporaries that a
//! killed process left behind, and versioned JSON manifests.
//!
//! Every file Arcane writes goes through [`write_atomic`]: the bytes go to a hidden temporary
//! file in the same folder, which is synced, renamed over the real name, and then the folder
//! itself is synced so that the rename is durable too (POSIX `rename(2)` is atomic, but only an
//! `fsync` of the directory makes the new entry survive a power loss). A reader therefore sees
//! either the old file or the new one, never a torn one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ArcaneError, Result};

/// Prefix of every temporary file [`write_atomic`] creates (followed by the target's name).
const TMP_PREFIX: &str = ".";
/// Marker between the target's name and the writer's process id.
const TMP_MARKER: &str = "-tmp-";

/// Writes `bytes` to `path` through a temporary file and a rename, syncing the file before the
/// rename and the folder after it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(|e| ArcaneError::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(temporary_name(name));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        crash_point(|| format!("before-rename:{name}"));
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ArcaneError::io(path, e));
    }
    sync_dir(dir)
}

/// Renames `from` to `to` (same folder) and syncs the folder, so the rename survives a crash.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| ArcaneError::io(to, e))?;
    sync_dir(parent(to))
}

/// Makes the entries of `dir` (new names, renames, deletions) durable. A no-op where folders
/// cannot be opened for syncing (Windows).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| ArcaneError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The folder of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Deletes the temporary files in `dir` that a process which no longer runs left behind (a
/// write interrupted by a crash or SIGKILL). Files of processes still running are kept: they
/// may be writing right now. Returns how many were removed.
pub fn remove_orphaned_temporaries(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ArcaneError::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_owner) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| ArcaneError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The name of a temporary file for `name` written by this process: `.NAME-tmp-PID`. Writers
/// that add an extension themselves (Burn's recorders) may append one: `.NAME-tmp-PID.EXT`.
pub fn temporary_name(name: &str) -> String {
    format!("{TMP_PREFIX}{name}{TMP_MARKER}{}", std::process::id())
}

/// The process id in a temporary file's name (`.NAME-tmp-PID` or `.NAME-tmp-PID.EXT`).
fn temporary_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TMP_PREFIX)?;
    let (_, after) = rest.rsplit_once(TMP_MARKER)?;
    let digits = after.split('.').next()?;
    digits.parse().ok()
}

/// Whether process `pid` is running (Linux: `/proc/PID` exists). Elsewhere every process is
/// assumed alive, so nothing is deleted that might be in use.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The environment variable of [`crash_point`].
pub const CRASH_VAR: &str = "ARCANE_TEST_CRASH";

/// A test hook for crash tests: when the environment variable `ARCANE_TEST_CRASH` equals the
/// name `point()` gives, the process kills itself with SIGKILL right here, as a scheduler, the
/// OOM killer or a power cut could. Points are named where files are written
/// (`before-rename:FILE`), where a checkpoint is completed (`before-state:STEP`: its files
/// are written, its state file not yet) and where an old one is deleted (`prune:STEP`: its
/// state file is gone, its other files not yet). Without the variable this is one cached
/// lookup.
pub fn crash_point(point: impl FnOnce() -> String) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(target) = TARGET.get_or_init(|| std::env::var(CRASH_VAR).ok()) else {
        return;
    };
    if *target == point() {
        eprintln!("{CRASH_VAR}: killing this process at {target}");
        #[cfg(unix)]
        // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// The name and version that open every versioned JSON file Arcane writes, and what the file
/// is called in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The `format` field (`"arcane-model"`, ...).
    pub format: &'static str,
    /// The `version` field this build reads and writes.
    pub version: u32,
    /// What the file is, for people ("Arcane model manifest").
    pub what: &'static str,
    /// How to get a good file when this one is bad ("re-save the model").
    pub remedy: &'static str,
}

impl Versioned {
    /// Reads `path` and checks its `format` and `version` before deserializing it, so that a
    /// file of another kind or version gets an error that says so rather than a serde message.
    pub fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
        self.parse(path, &text)
    }

    /// [`Self::read`] on text already in memory; `path` names it in errors.
    pub fn parse<T: DeserializeOwned>(&self, path: &Path, text: &str) -> Result<T> {
        let fail = |m: String| ArcaneError::format(path, m);
        let value: Value = serde_json::from_str(text).map_err(|e| {
            fail(format!(
                "corrupt {} (not valid JSON: {e}); {}",
                self.what, self.remedy
            ))
        })?;
        let format = value.get("format").and_then(Value::as_str);
        if format != Some(self.format) {
            return Err(fail(format!(
                "not an {} (format {:?}, expected {:?})",
                self.what,
                format.unwrap_or("missing"),
                self.format
            )));
        }
        let version = value.get("version").and_then(Value::as_u64);
        if version != Some(u64::from(self.version)) {
            let found = version.map_or("missing".to_string(), |v| v.to_string());
            return Err(fail(format!(
                "{} version {found} is not supported by this build, which reads version {}; \
                 use the Arcane release that wrote it",
                self.what, self.version
            )));
        }
        serde_json::from_value(value)
            .map_err(|e| fail(format!("corrupt {} ({e}); {}", self.what, self.remedy)))
    }

    /// Writes `value` as pretty JSON through [`write_atomic`].
    pub fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let json = serde_json::to_string_pretty(value).map_err(|e| {
            ArcaneError::format(path, format!("cannot serialize the {}: {e}", self.what))
        })?;
        write_atomic(path, json.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_name_their_writer() {
        assert_eq!(temporary_owner(".model.safetensors-tmp-42"), Some(42));
        assert_eq!(temporary_owner(".model-3-tmp-7.mpk"), Some(7));
        assert_eq!(
            temporary_owner(&temporary_name("x")),
            Some(std::process::id())
        );
        assert_eq!(temporary_owner("model.safetensors"), None);
        assert_eq!(temporary_owner(".hidden"), None);
    }

    #[test]
    fn orphans_are_removed_and_live_writers_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 never names a user process: the file is an orphan.
        std::fs::write(dir.path().join(".a.json-tmp-0"), b"x").unwrap();
        let own = temporary_name("b.json");
        std::fs::write(dir.path().join(&own), b"x").unwrap();
        std::fs::write(dir.path().join("keep.json"), b"x").unwrap();
        let removed = remove_orphaned_temporaries(dir.path()).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(removed, 1);
            assert!(!dir.path().join(".a.json-tmp-0").exists());
        }
        assert!(dir.path().join(own).exists());
        assert!(dir.path().join("keep.json").exists());
    }

    #[test]
    fn versioned_files_are_checked_before_parsing() {
        #[derive(serde::Deserialize, Serialize, Debug, PartialEq)]
        struct M {
            format: String,
            version: u32,
            n: u32,
        }
        let v = Versioned {
            format: "m",
            version: 2,
            what: "Arcane test manifest",
            remedy: "write it again",
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let m = M {
            format: "m".into(),
            version: 2,
            n: 7,
        };
        v.write(&path, &m).unwrap();
        assert_eq!(v.read::<M>(&path).unwrap(), m);
        let err = |text: &str| v.parse::<M>(&path, text).unwrap_err().to_string();
        assert!(err(r#"{"format":"x","version":2,"n":1}"#).contains("not an Arcane test manifest"));
        assert!(err(r#"{"format":"m","version":3,"n":1}"#).contains("version 3 is not supported"));
        assert!(err(r#"{"format":"m","version":2}"#).contains("corrupt Arcane test manifest"));
        assert!(err("{").contains("not valid JSON"));
    }
}
