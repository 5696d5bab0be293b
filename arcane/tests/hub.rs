//! Models by Hub id against a fake Hub on 127.0.0.1 (`fake_hub`): the exact cache tree of a
//! fresh download (Python's layout), offline loads without a request, revision pinning,
//! sharded checkpoints, interrupted downloads, gated repositories and refusals.
#![cfg(feature = "hub")]

mod common;
mod fake_hub;

use std::path::{Path, PathBuf};

use arcane::hub::{resolve, HubOptions, NoProgress, Progress, RepoCache};
use arcane::ArcaneError;
use common::{fixture, tokens, values, TestBackend};
use fake_hub::{sha256, FakeHub, File, Repo, TOKEN};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";
const REPO: &str = "arcane-test/tiny";

/// The files of a fixture folder.
fn files_of(name: &str) -> Vec<File> {
    let mut files: Vec<File> = std::fs::read_dir(fixture(name))
        .unwrap()
        .flatten()
        .map(|e| {
            let path = e.file_name().to_string_lossy().into_owned();
            File::new(&path, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn bytes_of(files: &[File], path: &str) -> Vec<u8> {
    files.iter().find(|f| f.path == path).unwrap().bytes.clone()
}

/// The llama fixture split into two shards and an index (transformers' naming).
fn sharded_llama() -> Vec<File> {
    let single = bytes_of(&files_of("llama"), "model.safetensors");
    let tensors = safetensors::SafeTensors::deserialize(&single).unwrap();
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    names.sort();
    let half = names.len() / 2;
    let mut weight_map = serde_json::Map::new();
    let mut out: Vec<File> = files_of("llama")
        .into_iter()
        .filter(|f| f.path != "model.safetensors")
        .collect();
    for (i, part) in [&names[..half], &names[half..]].iter().enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.clone(), tensors.tensor(n).unwrap()))
            .collect();
        for n in part.iter() {
            weight_map.insert(n.clone(), shard.clone().into());
        }
        out.push(File::new(
            &shard,
            safetensors::serialize(views, None).unwrap(),
        ));
    }
    let index =
        serde_json::json!({"metadata": {"total_size": single.len()}, "weight_map": weight_map});
    out.push(File::new(
        "model.safetensors.index.json",
        serde_json::to_vec_pretty(&index).unwrap(),
    ));
    out
}

/// The fake Hub of these tests: `arcane-test/tiny` with `main` = B (the llama fixture) and
/// the tag `v1` = A (the GPT-2 fixture), plus single-file, sharded, gated and pickle-only
/// repositories.
fn start_hub() -> FakeHub {
    let mut tiny = Repo::new(REPO, B, files_of("llama"));
    tiny.commits.insert(A.into(), files_of("gpt2"));
    tiny.refs.insert("v1".into(), A.into());
    let mut gated = Repo::new("arcane-test/gated", A, files_of("gpt2"));
    gated.gated = true;
    let pickle = Repo::new(
        "arcane-test/pickle",
        A,
        vec![
            File::new("config.json", bytes_of(&files_of("gpt2"), "config.json")),
            File::new("pytorch_model.bin", vec![0u8; 64]),
        ],
    );
    FakeHub::start(vec![
        tiny,
        Repo::new("arcane-test/llama-single", A, files_of("llama")),
        Repo::new("arcane-test/llama-sharded", B, sharded_llama()),
        gated,
        pickle,
    ])
}

fn options(hub_endpoint: &str, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: hub_endpoint.to_string(),
        cache_dir: cache.to_path_buf(),
        token: None,
        token_file: cache.join("token"),
        offline: false,
    }
}

/// Every file and symlink under `root`, sorted: `path -> target` for symlinks, `path = text`
/// for refs, `path (N bytes)` for other files.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push(format!("{rel} -> {}", target.display()));
            } else if meta.is_dir() {
                stack.push(path);
            } else if rel.contains("refs/") {
                out.push(format!(
                    "{rel} = {}",
                    std::fs::read_to_string(&path).unwrap()
                ));
            } else {
                out.push(format!("{rel} ({} bytes)", meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// The logits of `dir`'s model on a fixed prompt.
fn logits(dir: &Path) -> Vec<f32> {
    let device = Default::default();
    let model = arcane::load_model::<TestBackend>(dir, &device).unwrap();
    values(model.forward(tokens::<TestBackend>(&[1, 5, 9, 3, 7], &device)))
}

#[test]
fn a_fresh_download_writes_pythons_cache_layout() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let model = resolve(
        REPO,
        &options(&hub.endpoint(), cache.path()),
        &mut NoProgress,
    )
    .unwrap();
    let root = cache.path().join("models--arcane-test--tiny");
    assert_eq!(model.dir, root.join("snapshots").join(B));
    assert_eq!(
        (
            model.source.repo.as_str(),
            model.source.revision.as_str(),
            model.source.commit.as_str()
        ),
        (REPO, "main", B)
    );
    assert!(!model.from_cache_only);
    let files = files_of("llama");
    let mut expected: Vec<String> = files
        .iter()
        .flat_map(|f| {
            [
                format!("blobs/{} ({} bytes)", f.etag(), f.bytes.len()),
                format!("snapshots/{B}/{} -> ../../blobs/{}", f.path, f.etag()),
            ]
        })
        .collect();
    expected.push(format!("refs/main = {B}"));
    expected.sort();
    assert_eq!(tree(&root), expected);
    // The LFS file is named by its sha256 (X-Linked-Etag, not the pointer's ETag).
    let weights = bytes_of(&files, "model.safetensors");
    assert_eq!(
        std::fs::read(root.join("blobs").join(sha256(&weights))).unwrap(),
        weights
    );
    for f in &files {
        assert_eq!(
            std::fs::read(model.dir.join(&f.path)).unwrap(),
            f.bytes,
            "{}",
            f.path
        );
    }
    // The Hub's requests: the revision, a HEAD per file, a GET per file (the weights at the CDN).
    let requests = hub.requests();
    assert_eq!(requests[0], format!("GET /api/models/{REPO}/revision/main"));
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("HEAD ")).count(),
        4
    );
    assert_eq!(requests.iter().filter(|r| r.starts_with("GET ")).count(), 5);
    assert!(requests.contains(&format!("GET /cdn/{}", sha256(&weights))));
    assert!(requests
        .iter()
        .all(|r| !r.contains("range=") && !r.ends_with(" token")));
    // Loaded from the cache, the model is the fixture's.
    assert_eq!(logits(&model.dir), logits(&fixture("llama")));
    // Again online: one request for the revision, nothing downloaded again.
    let again = resolve(
        REPO,
        &options(&hub.endpoint(), cache.path()),
        &mut NoProgress,
    )
    .unwrap();
    assert_eq!(again, model);
    assert_eq!(
        hub.requests()[requests.len()..],
        [format!("GET /api/models/{REPO}/revision/main")]
    );
}

#[test]
fn offline_loads_make_no_request_and_name_what_is_missing() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(&hub.endpoint(), cache.path());
    let online = resolve(REPO, &opts, &mut NoProgress).unwrap();
    let seen = hub.requests().len();
    opts.offline = true;
    let offline = resolve(REPO, &opts, &mut NoProgress).unwrap();
    assert_eq!(hub.requests().len(), seen, "offline made a request");
    assert_eq!(
        (offline.dir.clone(), offline.source.clone()),
        (online.dir.clone(), online.source)
    );
    assert!(offline.from_cache_only);
    hub.stop();
    // With the server gone too, the same model.
    let device = Default::default();
    let a = arcane::load_model::<TestBackend>(
        &resolve(REPO, &opts, &mut NoProgress).unwrap().dir,
        &device,
    );
    assert!(a.is_ok());
    assert_eq!(logits(&offline.dir), logits(&fixture("llama")));
    // A revision never downloaded: the error names the cache folder and the missing ref.
    let err = resolve(&format!("{REPO}@v1"), &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    let root = cache.path().join("models--arcane-test--tiny");
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(
        err.contains(&root.join("refs/v1").display().to_string()),
        "{err}"
    );
    // A snapshot that lost its weights: the error names the missing file.
    std::fs::remove_file(online.dir.join("model.safetensors")).unwrap();
    let err = resolve(REPO, &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&online.dir.join("model.safetensors").display().to_string()),
        "{err}"
    );
    assert!(err.contains(&root.display().to_string()), "{err}");
}

#[test]
fn revisions_pin_commits_and_tags() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&hub.endpoint(), cache.path());
    let root = cache.path().join("models--arcane-test--tiny");
    let pinned = resolve(&format!("{REPO}@{A}"), &opts, &mut NoProgress).unwrap();
    assert_eq!(pinned.dir, root.join("snapshots").join(A));
    assert_eq!(pinned.source.commit, A);
    // A commit gets no ref (as in Python).
    assert!(!root.join("refs").exists());
    assert_eq!(logits(&pinned.dir), logits(&fixture("gpt2")));
    // A pinned commit already in the cache needs no request.
    let seen = hub.requests().len();
    assert_eq!(
        resolve(&format!("{REPO}@{A}"), &opts, &mut NoProgress).unwrap(),
        {
            let mut p = pinned.clone();
            p.from_cache_only = true;
            p
        }
    );
    assert_eq!(hub.requests().len(), seen);
    // A tag resolves to its commit and is recorded; it reuses the blobs already there.
    let tag = resolve(&format!("{REPO}@v1"), &opts, &mut NoProgress).unwrap();
    assert_eq!(
        (tag.dir.clone(), tag.source.revision.as_str()),
        (pinned.dir.clone(), "v1")
    );
    assert_eq!(std::fs::read_to_string(root.join("refs/v1")).unwrap(), A);
    assert_eq!(
        hub.requests()[seen..],
        [format!("GET /api/models/{REPO}/revision/v1")]
    );
    let main = resolve(REPO, &opts, &mut NoProgress).unwrap();
    assert_eq!(main.source.commit, B);
    // An unknown revision: the Hub's RevisionNotFound, in words.
    let err = resolve(&format!("{REPO}@nope"), &opts, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("no such revision"), "{err}");
}

#[test]
fn a_sharded_checkpoint_gives_the_logits_of_the_single_file() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&hub.endpoint(), cache.path());
    let single = resolve("arcane-test/llama-single", &opts, &mut NoProgress).unwrap();
    let sharded = resolve("arcane-test/llama-sharded", &opts, &mut NoProgress).unwrap();
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert!(sharded.dir.join(shard).is_file(), "{shard}");
    }
    assert!(!sharded.dir.join("model.safetensors").exists());
    let (a, b) = (logits(&single.dir), logits(&sharded.dir));
    assert_eq!(a.len(), 5 * 512);
    assert_eq!(a, b);
    // Offline, the sharded snapshot is complete too.
    let offline = HubOptions {
        offline: true,
        ..opts
    };
    assert_eq!(
        resolve("arcane-test/llama-sharded", &offline, &mut NoProgress)
            .unwrap()
            .dir,
        sharded.dir
    );
}

/// Records what progress said.
#[derive(Default)]
struct Recorder(Vec<(String, u64, u64)>, u64);

impl Progress for Recorder {
    fn start(&mut self, file: &str, total: u64, done: u64) {
        self.0.push((file.to_string(), total, done));
    }
    fn advance(&mut self, bytes: u64) {
        self.1 += bytes;
    }
}

#[test]
fn an_interrupted_download_is_never_used_and_then_resumes() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&hub.endpoint(), cache.path());
    let weights = bytes_of(&files_of("llama"), "model.safetensors");
    let etag = sha256(&weights);
    let cut = 40_000;
    assert!(weights.len() > cut);
    hub.cut_next(&weights, cut);
    let err = resolve(REPO, &opts, &mut NoProgress).unwrap_err();
    assert!(matches!(err, ArcaneError::Hub { .. }));
    assert!(
        err.to_string()
            .contains(&format!("stopped after {cut} of {}", weights.len())),
        "{err}"
    );
    let cache_repo = RepoCache::new(cache.path(), "models--arcane-test--tiny");
    assert!(
        !cache_repo.blob(&etag).exists(),
        "a truncated blob under its final name"
    );
    assert_eq!(
        std::fs::metadata(cache_repo.incomplete(&etag))
            .unwrap()
            .len(),
        cut as u64
    );
    assert!(!cache_repo
        .snapshot_dir(B)
        .join("model.safetensors")
        .exists());
    assert!(
        cache_repo.read_ref("main").is_none(),
        "a ref to an incomplete snapshot"
    );
    // Offline now: the missing weights are reported, the partial file is not used.
    let offline = HubOptions {
        offline: true,
        ..opts.clone()
    };
    assert!(resolve(REPO, &offline, &mut NoProgress).is_err());
    // Run again: only the rest is requested, and the model is whole.
    let mut progress = Recorder::default();
    let model = resolve(REPO, &opts, &mut progress).unwrap();
    assert!(hub
        .requests()
        .contains(&format!("GET /cdn/{etag} range=bytes={cut}-")));
    // The weights resume at the cut; the files after them had not been reached.
    let files = files_of("llama");
    let size = |name: &str| bytes_of(&files, name).len() as u64;
    let expected: Vec<(String, u64, u64)> = [
        ("model.safetensors", cut as u64),
        ("tokenizer.json", 0),
        ("generation_config.json", 0),
    ]
    .iter()
    .map(|(name, done)| (name.to_string(), size(name), *done))
    .collect();
    assert_eq!(progress.0, expected);
    let downloaded: u64 = expected.iter().map(|(_, size, done)| size - done).sum();
    assert_eq!(progress.1, downloaded);
    assert_eq!(std::fs::read(cache_repo.blob(&etag)).unwrap(), weights);
    assert!(!cache_repo.incomplete(&etag).exists());
    assert_eq!(logits(&model.dir), logits(&fixture("llama")));
}

#[test]
fn a_gated_repository_needs_a_token_and_says_how_to_give_one() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(&hub.endpoint(), cache.path());
    let err = resolve("arcane-test/gated", &opts, &mut NoProgress).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ArcaneError::Hub { .. }));
    for needed in [
        "gated",
        "HF_TOKEN",
        "hf auth login",
        "licence",
        &opts.token_file.display().to_string(),
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
    assert!(!cache
        .path()
        .join("models--arcane-test--gated/snapshots")
        .exists());
    opts.token = Some(TOKEN.into());
    let model = resolve("arcane-test/gated", &opts, &mut NoProgress).unwrap();
    assert_eq!(logits(&model.dir), logits(&fixture("gpt2")));
    // The token goes to the Hub, never to the CDN.
    let requests = hub.requests();
    assert!(requests
        .iter()
        .any(|r| r.starts_with("GET /api/models/arcane-test/gated/") && r.ends_with(" token")));
    assert!(requests
        .iter()
        .filter(|r| r.contains("/cdn/"))
        .all(|r| !r.ends_with(" token")));
    // A wrong token is told apart.
    opts.token = Some("wrong".into());
    let cache2 = tempfile::tempdir().unwrap();
    opts.cache_dir = cache2.path().to_path_buf();
    let err = resolve("arcane-test/gated", &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no access"), "{err}");
}

#[test]
fn refusals_say_what_to_do() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&hub.endpoint(), cache.path());
    let err = resolve("arcane-test/pickle", &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safe_serialization=True"),
        "{err}"
    );
    let err = resolve("arcane-test/absent", &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such model on http://127.0.0.1"), "{err}");
    let err = resolve("not a repo", &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ORG/NAME"), "{err}");
}

#[test]
fn an_unreachable_hub_falls_back_to_a_cached_snapshot() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&hub.endpoint(), cache.path());
    let model = resolve(REPO, &opts, &mut NoProgress).unwrap();
    hub.stop();
    let cached = resolve(REPO, &opts, &mut NoProgress).unwrap();
    assert_eq!((cached.dir, cached.from_cache_only), (model.dir, true));
    // Nothing cached: the error says the Hub cannot be reached and how to work offline.
    let err = resolve("arcane-test/llama-single", &opts, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot reach") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn an_optional_file_the_hub_lacks_is_recorded_as_absent() {
    let mut repo = Repo::new("arcane-test/partial", A, files_of("gpt2"));
    repo.listed_but_absent = vec!["tokenizer_config.json".into()];
    let hub = FakeHub::start(vec![repo]);
    let cache = tempfile::tempdir().unwrap();
    let model = resolve(
        "arcane-test/partial",
        &options(&hub.endpoint(), cache.path()),
        &mut NoProgress,
    )
    .unwrap();
    assert!(!model.dir.join("tokenizer_config.json").exists());
    let marker = cache.path().join(format!(
        "models--arcane-test--partial/.no_exist/{A}/tokenizer_config.json"
    ));
    assert_eq!(std::fs::read(&marker).unwrap(), b"");
    assert!(hub.requests().contains(&format!(
        "HEAD /arcane-test/partial/resolve/{A}/tokenizer_config.json"
    )));
    assert_eq!(logits(&model.dir), logits(&fixture("gpt2")));
}

#[test]
fn symlinks_in_subfolders_climb_to_the_blobs() {
    let cache = tempfile::tempdir().unwrap();
    let repo = RepoCache::new(cache.path(), "models--o--n");
    std::fs::create_dir_all(repo.blob("e").parent().unwrap()).unwrap();
    std::fs::write(repo.blob("e"), b"x").unwrap();
    repo.link(A, "sub/dir/f.json", "e").unwrap();
    let link: PathBuf = repo.snapshot_dir(A).join("sub/dir/f.json");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../../../../blobs/e")
    );
    assert_eq!(std::fs::read(&link).unwrap(), b"x");
}

/// Another process holding the blob's lock (as Python's `filelock` does while it downloads)
/// makes the download wait; the blob that process finished is then used, not downloaded again.
#[cfg(unix)]
#[test]
fn a_download_waits_for_the_blob_lock_and_reuses_the_finished_blob() {
    use std::os::unix::io::AsRawFd;

    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let weights = bytes_of(&files_of("gpt2"), "model.safetensors");
    let etag = sha256(&weights);
    let repo = RepoCache::new(cache.path(), "models--arcane-test--tiny");
    let lock_path = repo.lock_file(&etag);
    assert_eq!(
        lock_path,
        cache
            .path()
            .join(format!(".locks/models--arcane-test--tiny/{etag}.lock"))
    );
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock_path).unwrap();
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let opts = options(&hub.endpoint(), cache.path());
    let waiting =
        std::thread::spawn(move || resolve(&format!("{REPO}@{A}"), &opts, &mut NoProgress));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !waiting.is_finished(),
        "the download did not wait for the lock"
    );
    // The other process finishes its download and lets go.
    std::fs::create_dir_all(repo.blob(&etag).parent().unwrap()).unwrap();
    std::fs::write(repo.blob(&etag), &weights).unwrap();
    drop(held);
    let model = waiting.join().unwrap().unwrap();
    assert!(
        hub.requests().iter().all(|r| !r.contains("/cdn/")),
        "downloaded again: {:?}",
        hub.requests()
    );
    assert_eq!(logits(&model.dir), logits(&fixture("gpt2")));
}
