//! A fake Hugging Face Hub on `127.0.0.1:0` for the Hub tests: answers the requests Arcane's
//! client (and Python's `huggingface_hub`) make, as the Hub does —
//!
//! - `GET /api/models/ORG/NAME/revision/REV` → `{"id", "sha", "siblings": [{"rfilename"}]}`;
//! - `HEAD|GET /ORG/NAME/resolve/REV/PATH`: small files answer 200 with `ETag`, `Content-Length`
//!   and `X-Repo-Commit`; LFS files (`.safetensors`, `.bin`) answer 302 to an absolute
//!   `http://127.0.0.1:CDN_PORT/cdn/<sha256>` (another origin, as the real CDN is) with
//!   `X-Linked-Etag: "<sha256>"` and `X-Linked-Size`;
//! - `HEAD|GET /cdn/<sha256>` with `Range: bytes=N-` → 206 + `Content-Range`;
//! - errors with the Hub's `X-Error-Code`: 401 `GatedRepo` for a gated repository without
//!   `Authorization: Bearer test-token`, 404 `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`.
//!
//! Every request is logged (method, path, `Range`, whether a token came), and a download can
//! be cut after N bytes (the connection closes mid-body) to test interrupted downloads. One
//! connection at a time, `Connection: close`; the server thread ends when the hub is dropped
//! or after two minutes, whichever is first.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The token the fake Hub accepts for gated repositories.
pub const TOKEN: &str = "test-token";
/// Longest a fake Hub serves.
const LIFETIME: Duration = Duration::from_secs(120);

/// One file of a commit.
#[derive(Clone)]
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
}

impl File {
    pub fn new(path: &str, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            bytes,
        }
    }

    /// Stored with Git LFS (served through the CDN redirect, ETag = sha256).
    pub fn is_lfs(&self) -> bool {
        self.path.ends_with(".safetensors") || self.path.ends_with(".bin")
    }

    /// The ETag the Hub gives it: the sha256 for LFS files, a 40-hex "git oid" otherwise.
    pub fn etag(&self) -> String {
        if self.is_lfs() {
            sha256(&self.bytes)
        } else {
            sha256(&[b"blob ".as_slice(), &self.bytes].concat())[..40].to_string()
        }
    }
}

/// A repository: commits (by sha) and refs (branch or tag → sha).
#[derive(Clone)]
pub struct Repo {
    pub id: String,
    pub gated: bool,
    pub commits: HashMap<String, Vec<File>>,
    pub refs: HashMap<String, String>,
    /// Names the file listing shows but `resolve` answers 404 `EntryNotFound` for.
    pub listed_but_absent: Vec<String>,
}

impl Repo {
    /// A repository whose `main` is one commit `sha` holding `files`.
    pub fn new(id: &str, sha: &str, files: Vec<File>) -> Self {
        Self {
            id: id.into(),
            gated: false,
            commits: HashMap::from([(sha.to_string(), files)]),
            refs: HashMap::from([("main".to_string(), sha.to_string())]),
            listed_but_absent: Vec::new(),
        }
    }

    /// The commit `rev` names (a ref or a sha).
    fn commit(&self, rev: &str) -> Option<(&String, &Vec<File>)> {
        let sha = self.refs.get(rev).map(String::as_str).unwrap_or(rev);
        self.commits.get_key_value(sha)
    }
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct State {
    repos: Vec<Repo>,
    log: Mutex<Vec<String>>,
    /// (sha256 of a file, bytes to send before closing) for the next body of that file.
    cut: Mutex<Option<(String, usize)>>,
    /// Whether a cut download first holds the connection open (a download that hangs until
    /// its client is killed) instead of closing it at once.
    stall: AtomicBool,
    stop: AtomicBool,
    /// The port of the "CDN" (a second listener: another origin than the Hub's).
    cdn_port: u16,
}

/// A running fake Hub.
pub struct FakeHub {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    pub fn start(repos: Vec<Repo>) -> Self {
        let bind = || {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.set_nonblocking(true).unwrap();
            listener
        };
        let (hub, cdn) = (bind(), bind());
        let addr = hub.local_addr().unwrap();
        let state = Arc::new(State {
            repos,
            log: Mutex::new(Vec::new()),
            cut: Mutex::new(None),
            stall: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            cdn_port: cdn.local_addr().unwrap().port(),
        });
        let serving = state.clone();
        let thread = std::thread::spawn(move || serve([hub, cdn], serving));
        Self {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far: `METHOD PATH[ range=bytes=N-][ token]`.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// The next download of the file with these bytes closes the connection after `after`
    /// bytes of the body.
    pub fn cut_next(&self, bytes: &[u8], after: usize) {
        *self.state.cut.lock().unwrap() = Some((sha256(bytes), after));
    }

    /// The next download of the file with these bytes sends `after` bytes of the body, then
    /// hangs (up to 5 s) before closing: time for a test to kill the client mid-download.
    pub fn stall_next(&self, bytes: &[u8], after: usize) {
        self.state.stall.store(true, Ordering::SeqCst);
        self.cut_next(bytes, after);
    }

    /// Stops serving: later connections are refused.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(listeners: [TcpListener; 2], state: Arc<State>) {
    let started = Instant::now();
    while !state.stop.load(Ordering::SeqCst) && started.elapsed() < LIFETIME {
        let mut idle = true;
        for listener in &listeners {
            if let Ok((stream, _)) = listener.accept() {
                idle = false;
                let _ = handle(stream, &state);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// An answer: status, headers and body (the body is not sent for `HEAD`).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .body(format!("{{\"error\":\"{message}\"}}").into_bytes())
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

fn handle(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let range = headers.get("range").cloned();
    let authorized =
        headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {TOKEN}"));
    let mut entry = format!("{method} {target}");
    if let Some(r) = &range {
        entry.push_str(&format!(" range={r}"));
    }
    if headers.contains_key("authorization") {
        entry.push_str(" token");
    }
    state.log.lock().unwrap().push(entry);
    let (answer, cut) = route(state, &target, range.as_deref(), authorized);
    let result = write_answer(&mut stream, &method, &answer, cut);
    if cut.is_some() && state.stall.swap(false, Ordering::SeqCst) {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !state.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    result
}

fn write_answer(
    stream: &mut TcpStream,
    method: &str,
    answer: &Answer,
    cut: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", answer.status);
    let has_length = answer
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let n = cut.unwrap_or(answer.body.len()).min(answer.body.len());
        stream.write_all(&answer.body[..n])?;
    }
    stream.flush()
}

/// The answer to `target`, and how many body bytes to send if the download is to be cut.
fn route(
    state: &State,
    target: &str,
    range: Option<&str>,
    authorized: bool,
) -> (Answer, Option<usize>) {
    let path = target.split('?').next().unwrap_or("");
    if let Some(sha) = path.strip_prefix("/cdn/") {
        return cdn(state, sha, range);
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let (repo_id, rest, api) = match segments.as_slice() {
        [a, m, org, name, rest @ ..] if a == "api" && m == "models" => {
            (format!("{org}/{name}"), rest.to_vec(), true)
        }
        [org, name, rest @ ..] => (format!("{org}/{name}"), rest.to_vec(), false),
        _ => return (Answer::error(404, "RepoNotFound", "no route"), None),
    };
    let Some(repo) = state.repos.iter().find(|r| r.id == repo_id) else {
        let msg = format!("Repository Not Found for url: {target}.");
        return (Answer::error(404, "RepoNotFound", &msg), None);
    };
    if repo.gated && !authorized {
        let msg = format!("Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.");
        return (Answer::error(401, "GatedRepo", &msg), None);
    }
    match (api, rest.as_slice()) {
        (true, [r, rev]) if r == "revision" => (repo_info(repo, rev), None),
        (false, [r, rev, file @ ..]) if r == "resolve" => {
            (resolve(state, repo, rev, &file.join("/")), None)
        }
        _ => (Answer::error(404, "EntryNotFound", "no such route"), None),
    }
}

fn repo_info(repo: &Repo, rev: &str) -> Answer {
    let Some((sha, files)) = repo.commit(rev) else {
        return Answer::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let siblings: Vec<_> = files
        .iter()
        .map(|f| f.path.as_str())
        .chain(repo.listed_but_absent.iter().map(String::as_str))
        .map(|path| serde_json::json!({ "rfilename": path }))
        .collect();
    let body = serde_json::json!({
        "_id": "0",
        "id": repo.id,
        "modelId": repo.id,
        "sha": sha,
        "private": false,
        "gated": if repo.gated { serde_json::json!("auto") } else { serde_json::json!(false) },
        "disabled": false,
        "tags": [],
        "siblings": siblings,
    });
    Answer::new(200)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
}

fn resolve(state: &State, repo: &Repo, rev: &str, path: &str) -> Answer {
    let Some((sha, files)) = repo.commit(rev) else {
        return Answer::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let Some(file) = files.iter().find(|f| f.path == path) else {
        return Answer::error(404, "EntryNotFound", &format!("{path} does not exist"))
            .header("X-Repo-Commit", sha.as_str());
    };
    let etag = file.etag();
    if file.is_lfs() {
        // The pointer's own ETag differs: a client must prefer X-Linked-Etag.
        return Answer::new(302)
            .header(
                "Location",
                format!("http://127.0.0.1:{}/cdn/{etag}", state.cdn_port),
            )
            .header("X-Linked-Etag", format!("\"{etag}\""))
            .header("X-Linked-Size", file.bytes.len().to_string())
            .header("ETag", "\"pointer-not-the-blob\"")
            .header("X-Repo-Commit", sha.as_str());
    }
    Answer::new(200)
        .header("ETag", format!("\"{etag}\""))
        .header("X-Repo-Commit", sha.as_str())
        .body(file.bytes.clone())
}

fn cdn(state: &State, sha: &str, range: Option<&str>) -> (Answer, Option<usize>) {
    let file = state
        .repos
        .iter()
        .flat_map(|r| r.commits.values().flatten())
        .find(|f| f.is_lfs() && f.etag() == sha);
    let Some(file) = file else {
        return (Answer::new(404), None);
    };
    let cut = {
        let mut cut = state.cut.lock().unwrap();
        match cut.as_ref() {
            Some((s, n)) if s == sha => {
                let n = *n;
                *cut = None;
                Some(n)
            }
            _ => None,
        }
    };
    let len = file.bytes.len();
    let from = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let answer = match from {
        Some(from) if from < len => Answer::new(206)
            .header("Content-Range", format!("bytes {from}-{}/{len}", len - 1))
            .header("ETag", format!("\"{sha}\""))
            .body(file.bytes[from..].to_vec()),
        Some(_) => Answer::new(416).header("Content-Range", format!("bytes */{len}")),
        None => Answer::new(200)
            .header("ETag", format!("\"{sha}\""))
            .body(file.bytes.clone()),
    };
    (answer, cut)
}

/// Percent-decodes a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
