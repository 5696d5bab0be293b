//! Where the Hub is, where its cache lives, the token and offline mode — from the same
//! environment variables Python's `huggingface_hub` reads (`constants.py`, `utils/_auth.py`),
//! so both share one cache and one login.

use std::path::PathBuf;

use crate::error::{ArcaneError, Result};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the Hub and where to keep its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// Base URL, without a trailing `/` (`HF_ENDPOINT`; default [`DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    /// The cache folder holding `models--ORG--NAME` folders (`HF_HUB_CACHE`, ...).
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer TOKEN` (`HF_TOKEN`, or the token file).
    pub token: Option<String>,
    /// Where the token file is looked for, named in the hint of a gated repository.
    pub token_file: PathBuf,
    /// Resolve strictly from the cache, with no request (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl HubOptions {
    /// The options of this process's environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The options for an environment given as a lookup (tests pass a map, so that they do
    /// not change the process's environment under parallel tests).
    ///
    /// - endpoint: `HF_ENDPOINT`, trailing `/` trimmed;
    /// - `HF_HOME`: `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
    /// - cache: `HF_HUB_CACHE` > `HUGGINGFACE_HUB_CACHE` > `$HF_HOME/hub`;
    /// - token: `HF_TOKEN` > `HUGGING_FACE_HUB_TOKEN` > the file `HF_TOKEN_PATH` >
    ///   `$HF_HOME/token` (blank values count as unset);
    /// - offline: `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) in {1, true, yes, on}, any case.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        // Only an error when something needs it (no HOME, but HF_HUB_CACHE given, is fine).
        let hf_home = match set("HF_HOME") {
            Some(home) => Ok(PathBuf::from(home)),
            None => match set("XDG_CACHE_HOME") {
                Some(xdg) => Ok(PathBuf::from(xdg).join("huggingface")),
                None => home_dir(&set).map(|h| h.join(".cache").join("huggingface")),
            },
        };
        let cache_dir = match set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
            Some(dir) => PathBuf::from(dir),
            None => hf_home
                .as_ref()
                .map_err(|e| ArcaneError::InvalidInput(e.clone()))?
                .join("hub"),
        };
        let token_file = match (set("HF_TOKEN_PATH"), &hf_home) {
            (Some(path), _) => PathBuf::from(path),
            (None, Ok(home)) => home.join("token"),
            (None, Err(_)) => PathBuf::from("~/.cache/huggingface/token"),
        };
        let token = set("HF_TOKEN")
            .or_else(|| set("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| std::fs::read_to_string(&token_file).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|name| set(name).is_some_and(|v| is_true(&v)));
        let endpoint = set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir,
            token,
            token_file,
            offline,
        })
    }
}

/// Python's `_is_true`: `1`, `ON`, `YES`, `TRUE` in any case.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// `$HOME` (`%USERPROFILE%` on Windows), or the message to give when there is none.
fn home_dir(set: &impl Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    set("HOME")
        .or_else(|| set("USERPROFILE"))
        .map(PathBuf::from)
        .ok_or_else(|| {
            "cannot place the Hugging Face cache: HOME is not set; set HF_HOME or HF_HUB_CACHE"
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn options(vars: &[(&str, &str)]) -> HubOptions {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubOptions::from_vars(|k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn precedence_of_the_cache_folder() {
        let home = [("HOME", "/h")];
        assert_eq!(
            options(&home).cache_dir,
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        let xdg = [("HOME", "/h"), ("XDG_CACHE_HOME", "/x")];
        assert_eq!(options(&xdg).cache_dir, PathBuf::from("/x/huggingface/hub"));
        let hf_home = [("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/f")];
        assert_eq!(options(&hf_home).cache_dir, PathBuf::from("/f/hub"));
        assert_eq!(options(&hf_home).token_file, PathBuf::from("/f/token"));
        let legacy = [("HF_HOME", "/f"), ("HUGGINGFACE_HUB_CACHE", "/l")];
        assert_eq!(options(&legacy).cache_dir, PathBuf::from("/l"));
        let both = [("HUGGINGFACE_HUB_CACHE", "/l"), ("HF_HUB_CACHE", "/c")];
        assert_eq!(options(&both).cache_dir, PathBuf::from("/c"));
        // Without HOME only a cache that needs it is an error.
        assert!(HubOptions::from_vars(|_| None).is_err());
    }

    #[test]
    fn endpoint_token_and_offline() {
        let o = options(&[
            ("HOME", "/h"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", " t1 \n"),
            ("HUGGING_FACE_HUB_TOKEN", "t2"),
            ("HF_HUB_OFFLINE", "Yes"),
        ]);
        assert_eq!(o.endpoint, "http://127.0.0.1:9");
        assert_eq!(o.token.as_deref(), Some("t1"));
        assert!(o.offline);
        let o = options(&[("HOME", "/h"), ("HF_HUB_OFFLINE", "0")]);
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert!(!o.offline);
        assert_eq!(o.token, None);
    }

    #[test]
    fn token_file_when_no_variable() {
        let dir = std::env::temp_dir().join(format!("arcane-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap();
        let o = options(&[("HOME", "/h"), ("HF_TOKEN_PATH", path)]);
        assert_eq!(o.token.as_deref(), Some("from-file"));
        let o = options(&[("HOME", "/h"), ("HF_TOKEN_PATH", path), ("HF_TOKEN", "env")]);
        assert_eq!(o.token.as_deref(), Some("env"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
