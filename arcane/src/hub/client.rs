//! The few HTTP requests that resolve a model on the Hub, on a blocking `ureq` 2 agent.
//!
//! Why a small client of our own rather than the `hf-hub` crate: 0.4/0.5 read neither
//! `HF_TOKEN` nor `HF_HUB_CACHE` (hf-hub#133) and 0.5 fails with `MissingHeader("Content-Range")`
//! when ureq 3's `Accept-Encoding: gzip` makes the CDN ignore `Range` (hf-hub#141); 1.0 pulls
//! tokio, reqwest and hf-xet into every build, and 1.1 reads no environment at all. Arcane
//! needs Python's exact cache layout, its environment variables, an offline mode that makes
//! no request, and the Hub's error codes turned into advice — a few hundred lines on `ureq`
//! 2 (blocking, rustls with *ring*, no async runtime, already in the lock file).
//!
//! Requests, as Python's `huggingface_hub` makes them:
//! - `GET {endpoint}/api/models/{repo}/revision/{rev}` → `{"sha", "siblings": [{"rfilename"}]}`;
//! - `HEAD {endpoint}/{repo}/resolve/{commit}/{path}` with `Accept-Encoding: identity`,
//!   following only redirects to the same origin (a renamed repository); the answer's `X-Linked-Etag`
//!   or `ETag` names the blob, `X-Linked-Size` or `Content-Length` is its size and an
//!   absolute `Location` (the CDN, for LFS files) is where the bytes are;
//! - `GET` of that URL, with `Range: bytes=N-` to resume a partial download.
//!
//! Every request says `Accept-Encoding: identity`: a compressed body would make `Range`
//! offsets and sizes meaningless. The token goes only to the URLs the client builds from the
//! endpoint (and redirects on the same origin), never to another origin a redirect names
//! (the CDN's signed URLs need none).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use super::options::HubOptions;
use super::repo_id::{encode_path, encode_segment};
use super::Progress;
use crate::error::{ArcaneError, Result};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Bytes read per chunk of a download (and per progress update).
const CHUNK: usize = 1 << 20;

/// What the Hub says about a revision.
#[derive(Debug)]
pub(crate) struct RepoInfo {
    /// The commit the revision points to.
    pub sha: String,
    /// The repository's files at that commit (`siblings[].rfilename`).
    pub files: Vec<String>,
}

/// Where a file's bytes are and what they are called in the cache.
#[derive(Debug)]
pub(crate) struct FileMeta {
    /// The blob name: the ETag without quotes or `W/` (a sha256 for LFS files).
    pub etag: String,
    /// Size in bytes of the whole file.
    pub size: u64,
    /// The URL to `GET` the bytes from.
    pub url: String,
    /// Whether `url` is the Hub's own (the token goes with it) rather than a CDN's.
    pub on_hub: bool,
}

/// A failed request: the Hub could not be reached, or it answered with an error.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No answer (DNS, refused connection, TLS, timeout).
    Unreachable(String),
    /// An answer that says no; the error already holds the advice.
    Refused(ArcaneError),
}

impl Failure {
    /// The error to report for `label` (`ORG/NAME@REV`).
    pub fn into_error(self, label: &str, options: &HubOptions) -> ArcaneError {
        match self {
            Failure::Refused(e) => e,
            Failure::Unreachable(why) => ArcaneError::hub(
                label,
                format!(
                    "cannot reach {}: {why}; check the network or HF_ENDPOINT, or set \
                     HF_HUB_OFFLINE=1 to use a copy already in {}",
                    options.endpoint,
                    options.cache_dir.display()
                ),
            ),
        }
    }
}

/// A blocking client for one repository.
pub(crate) struct Client<'a> {
    agent: ureq::Agent,
    options: &'a HubOptions,
    /// `ORG/NAME`.
    repo: &'a str,
    /// `ORG/NAME@REV`, for messages.
    label: &'a str,
}

impl<'a> Client<'a> {
    pub fn new(options: &'a HubOptions, repo: &'a str, label: &'a str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("arcane/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent,
            options,
            repo,
            label,
        }
    }

    /// `GET /api/models/{repo}/revision/{rev}`: the commit and the file list.
    pub fn repo_info(&self, revision: &str) -> Result<RepoInfo, Failure> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.options.endpoint,
            self.repo,
            encode_segment(revision)
        );
        let response = self.send("GET", &url, None, true, false)?;
        let text = response
            .into_string()
            .map_err(|e| Failure::Unreachable(format!("reading {url}: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            self.refused(format!(
                "{url} answered with invalid JSON ({e}); is HF_ENDPOINT a Hub?"
            ))
        })?;
        let sha = json["sha"]
            .as_str()
            .filter(|s| super::repo_id::is_commit(s))
            .ok_or_else(|| self.refused(format!("{url} answered without a commit `sha`")))?;
        let files = json["siblings"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|s| s["rfilename"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RepoInfo {
            sha: sha.to_string(),
            files,
        })
    }

    /// `HEAD /{repo}/resolve/{commit}/{path}`: the file's blob name, size and URL. `None`
    /// when the Hub says the file does not exist at that commit (`EntryNotFound`).
    pub fn file_meta(&self, commit: &str, path: &str) -> Result<Option<FileMeta>, Failure> {
        let url = format!(
            "{}/{}/resolve/{commit}/{}",
            self.options.endpoint,
            self.repo,
            encode_path(path)
        );
        let response = match self.send("HEAD", &url, None, true, false) {
            Err(Failure::Refused(ArcaneError::Hub { message, .. }))
                if message.starts_with(ENTRY_NOT_FOUND) =>
            {
                return Ok(None)
            }
            other => other?,
        };
        let header = |name: &str| response.header(name).map(str::to_string);
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\']) && e != "." && e != "..")
            .ok_or_else(|| self.refused(format!("{url}: the answer has no usable ETag")))?;
        let size = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                self.refused(format!(
                    "{url}: the answer has no size (X-Linked-Size or Content-Length); \
                     a proxy in between may remove it"
                ))
            })?;
        let (url, on_hub) = match (response.status(), header("location")) {
            (300..=399, Some(location)) => (location, false),
            _ => (response.get_url().to_string(), true),
        };
        Ok(Some(FileMeta {
            etag,
            size,
            url,
            on_hub,
        }))
    }

    /// Appends the bytes of `meta.url` from `dest`'s current length up to `meta.size` to `dest`
    /// (`Range: bytes=N-`), reporting progress, and syncs the file. A server that ignores
    /// the range restarts the file. Fails, leaving the partial file for a later resume, when
    /// the connection ends early.
    pub fn fetch(
        &self,
        meta: &FileMeta,
        dest: &Path,
        name: &str,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let size = meta.size;
        let mut have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        if have > size {
            have = 0;
        }
        let from = (have > 0).then_some(have);
        let response = self
            .send("GET", &meta.url, from, meta.on_hub, true)
            .map_err(|f| f.into_error(self.label, self.options))?;
        let resumed = response.status() == 206
            && response
                .header("content-range")
                .is_some_and(|r| r.starts_with(&format!("bytes {have}-")));
        if !resumed {
            have = 0;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(dest)
            .map_err(|e| ArcaneError::io(dest, e))?;
        progress.start(name, size, have);
        let mut reader = response.into_reader();
        let mut buf = vec![0u8; CHUNK];
        let mut cut_short = "the connection closed early".to_string();
        while have < size {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n.min((size - have) as usize),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    cut_short = e.to_string();
                    break;
                }
            };
            if let Err(e) = file.write_all(&buf[..n]) {
                progress.finish(name);
                return Err(ArcaneError::io(dest, e));
            }
            have += n as u64;
            progress.advance(n as u64);
        }
        progress.finish(name);
        // What arrived is kept (synced) for a resume, under the `.incomplete` name only.
        file.sync_all().map_err(|e| ArcaneError::io(dest, e))?;
        if have < size {
            return Err(self.interrupted(name, have, size, &cut_short));
        }
        Ok(())
    }

    fn interrupted(&self, name: &str, have: u64, size: u64, why: &str) -> ArcaneError {
        ArcaneError::hub(
            self.label,
            format!(
                "downloading {name} stopped after {have} of {size} bytes ({why}); run the \
                 command again to resume it (the partial file is kept as a .incomplete blob \
                 and never used as the model's file)"
            ),
        )
    }

    /// One request, following redirects: those that stay on the same origin always (as
    /// Python's `_httpx2_follow_hub_redirects_with_backoff`), others only when
    /// `follow_absolute` (a `HEAD` must stop at the CDN's `Location` to read the Hub's
    /// headers). The token is sent when `with_token`, and no more once a redirect leaves the
    /// origin.
    /// Error statuses become [`Failure::Refused`] with advice.
    fn send(
        &self,
        method: &str,
        url: &str,
        from: Option<u64>,
        mut with_token: bool,
        follow_absolute: bool,
    ) -> Result<ureq::Response, Failure> {
        let mut url = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let mut request = self
                .agent
                .request(method, &url)
                .set("Accept-Encoding", "identity");
            if let Some(from) = from {
                request = request.set("Range", &format!("bytes={from}-"));
            }
            if let (Some(token), true) = (&self.options.token, with_token) {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            let response = match request.call() {
                Ok(response) => response,
                Err(ureq::Error::Status(code, response)) => {
                    return Err(Failure::Refused(self.status_error(code, &response)))
                }
                Err(ureq::Error::Transport(t)) => return Err(Failure::Unreachable(t.to_string())),
            };
            let target = match response.header("location") {
                Some(l) if l.starts_with('/') => format!("{}{l}", origin(&url)),
                Some(l) => l.to_string(),
                None => return Ok(response),
            };
            if !(300..=399).contains(&response.status()) {
                return Ok(response);
            }
            if origin(&target) == origin(&url) {
                url = target;
            } else if follow_absolute {
                url = target;
                with_token = false;
            } else {
                return Ok(response);
            }
        }
        Err(self.refused(format!("more than {MAX_REDIRECTS} redirects from {url}")))
    }

    fn refused(&self, message: String) -> Failure {
        Failure::Refused(ArcaneError::hub(self.label, message))
    }

    /// The advice for an error status, from the Hub's `X-Error-Code` (`GatedRepo`,
    /// `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and `X-Error-Message`.
    fn status_error(&self, code: u16, response: &ureq::Response) -> ArcaneError {
        let error_code = response.header("x-error-code").unwrap_or("");
        let said = response
            .header("x-error-message")
            .map(|m| format!(" (the Hub says: {m})"))
            .unwrap_or_default();
        let endpoint = &self.options.endpoint;
        let repo = self.repo;
        let login = format!(
            "set HF_TOKEN=hf_... (a token from {endpoint}/settings/tokens), run `hf auth login` \
             (huggingface-cli login), or write the token to {}",
            self.options.token_file.display()
        );
        let message = match (code, error_code) {
            (401 | 403, "GatedRepo") if self.options.token.is_none() => format!(
                "is a gated repository and no token was given{said}: accept its licence on \
                 {endpoint}/{repo}, then {login}"
            ),
            (_, "GatedRepo") => format!(
                "is a gated repository and your token has no access to it{said}: accept its \
                 licence on {endpoint}/{repo} (access may need the owners' approval) with the \
                 account the token belongs to"
            ),
            (_, "RevisionNotFound") => format!(
                "has no such revision{said}; give a branch, tag or full commit sha after `@`"
            ),
            (_, "EntryNotFound") => format!("{ENTRY_NOT_FOUND}{said}"),
            (401, _) if self.options.token.is_none() => format!(
                "the Hub answered 401{said}: the repository does not exist on {endpoint} or is \
                 private; check ORG/NAME (or the local folder you meant: it does not exist), \
                 and for a private repository {login}"
            ),
            (401, _) => format!("the Hub refused your token (401){said}; check HF_TOKEN"),
            (_, "RepoNotFound") | (404, _) => format!(
                "no such model on {endpoint}{said}; check ORG/NAME, or the local folder you \
                 meant (it does not exist)"
            ),
            _ => format!("the Hub answered HTTP {code}{said}"),
        };
        ArcaneError::hub(self.label, message)
    }
}

/// How [`Client::status_error`] begins an `EntryNotFound` message (so that
/// [`Client::file_meta`] can tell it apart).
const ENTRY_NOT_FOUND: &str = "a file the repository lists is not on the Hub";

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}
