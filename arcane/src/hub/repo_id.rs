//! `ORG/NAME[@REVISION]`: parsing, validation and the forms a repository id takes in URLs and
//! in the cache.
//!
//! The rules follow the Hub's own (`huggingface_hub.utils.validate_repo_id`): the owner and
//! the name use `[A-Za-z0-9_.-]`, do not start or end with `-` or `.`, hold no `--` or `..`,
//! and are at most 96 characters. Arcane asks for the two-part form (`openai-community/gpt2`,
//! not the legacy `gpt2`), so a one-word folder name is never mistaken for a Hub model.

use crate::error::{ArcaneError, Result};

/// The branch a repository id without `@REVISION` resolves.
pub const DEFAULT_REVISION: &str = "main";

/// Longest owner or name the Hub accepts.
const MAX_PART: usize = 96;

/// A parsed `ORG/NAME[@REVISION]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// `ORG/NAME`.
    pub repo: String,
    /// The branch, tag or commit after `@`, or `None` for [`DEFAULT_REVISION`].
    pub revision: Option<String>,
}

impl RepoSpec {
    /// Parses `ORG/NAME[@REVISION]`, refusing ids the Hub would refuse (with the rule broken).
    pub fn parse(spec: &str) -> Result<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (spec, None),
        };
        let bad = |why: &str| {
            ArcaneError::InvalidInput(format!(
                "{spec:?} is not a Hub model id: {why}; write ORG/NAME or ORG/NAME@REVISION \
                 (a branch, tag or commit), e.g. openai-community/gpt2@main"
            ))
        };
        let (owner, name) = repo
            .split_once('/')
            .ok_or_else(|| bad("it has no `/` between owner and name"))?;
        for part in [owner, name] {
            if let Some(why) = part_problem(part) {
                return Err(bad(&why));
            }
        }
        if let Some(rev) = revision {
            if let Some(why) = revision_problem(rev) {
                return Err(bad(&why));
            }
        }
        Ok(Self {
            repo: repo.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// The revision to resolve: the one given, or `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The repository's folder in the cache: `models--ORG--NAME`.
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// Whether `arg` has the shape of `ORG/NAME[@REVISION]` (and so, when no such local path
/// exists, is meant for the Hub). A path starting with `.`, `/` or `~`, or with more than
/// one `/` before any `@`, is a local path.
pub fn looks_like_repo_id(arg: &str) -> bool {
    RepoSpec::parse(arg).is_ok()
}

/// Whether `revision` is a full commit sha (40 lowercase hex digits), which needs no
/// `refs/` entry and never moves.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Percent-encodes `text` as one URL path segment (`feature/x` → `feature%2Fx`), leaving the
/// unreserved characters of RFC 3986 §2.3 as they are.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a file path in a repository, segment by segment (the `/` stay).
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// What is wrong with one half of `ORG/NAME`, if anything.
fn part_problem(part: &str) -> Option<String> {
    if part.is_empty() {
        return Some("the owner or the name is empty".into());
    }
    if part.len() > MAX_PART {
        return Some(format!("{part:?} is longer than {MAX_PART} characters"));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "{part:?} contains {c:?} (only letters, digits, `-`, `_` and `.` are allowed)"
        ));
    }
    if part.contains("--") || part.contains("..") {
        return Some(format!("{part:?} contains `--` or `..`"));
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
        return Some(format!("{part:?} starts or ends with `-` or `.`"));
    }
    None
}

/// What is wrong with a revision, if anything: it becomes a file under `refs/`, so it may not
/// climb out of that folder.
fn revision_problem(rev: &str) -> Option<String> {
    if rev.is_empty() {
        return Some("the revision after `@` is empty".into());
    }
    if rev.chars().any(|c| c.is_control() || c == '\\') {
        return Some("the revision contains a control character or `\\`".into());
    }
    if rev
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some(format!(
            "the revision {rev:?} has an empty, `.` or `..` path segment"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_revisions() {
        let spec = RepoSpec::parse("org/name@v1.0").unwrap();
        assert_eq!(spec.repo, "org/name");
        assert_eq!(spec.revision(), "v1.0");
        assert_eq!(spec.folder_name(), "models--org--name");
        assert_eq!(RepoSpec::parse("a-b/c.d_e").unwrap().revision(), "main");
        assert_eq!(
            RepoSpec::parse("o/n@refs/pr/1").unwrap().revision(),
            "refs/pr/1"
        );
    }

    #[test]
    fn refuses_local_looking_paths_and_bad_ids() {
        for arg in [
            "gpt2",
            "./org/name",
            "/abs/path",
            "runs/a/b",
            "org/-name",
            "org/na--me",
            "org/name.",
            "org/na me",
            "~/x",
            "org/name@",
            "org/name@../x",
            "org/",
        ] {
            assert!(!looks_like_repo_id(arg), "{arg} should not be a repo id");
        }
        assert!(looks_like_repo_id("runs/finetune"));
    }

    #[test]
    fn commits_and_encoding() {
        assert!(is_commit(&"a".repeat(40)));
        assert!(!is_commit(&"A".repeat(40)));
        assert!(!is_commit("main"));
        assert_eq!(encode_segment("feature/x y"), "feature%2Fx%20y");
        assert_eq!(encode_path("sub dir/f.json"), "sub%20dir/f.json");
    }
}
