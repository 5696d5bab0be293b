//! The CLI with Hub ids against the fake Hub on 127.0.0.1 (`arcane/tests/fake_hub`): the
//! environment variables reach the client, a Hub model generates what its local folder does,
//! offline runs need no server, a gated repository fails with exit code 1 and the hint, and a
//! fine-tune records the commit of its base.

mod common;
#[path = "../../arcane/tests/fake_hub/mod.rs"]
mod fake_hub;

use std::path::Path;
use std::process::{Command, Output};

use common::{bin, fixture};
use fake_hub::{FakeHub, File, Repo};
use serde_json::Value;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";

fn files_of(name: &str) -> Vec<File> {
    std::fs::read_dir(fixture(name))
        .unwrap()
        .flatten()
        .map(|e| {
            let path = e.file_name().to_string_lossy().into_owned();
            File::new(&path, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// `arcane-test/gpt2` (main = B = the GPT-2 fixture, tag v1 = A = the same files) and a
/// gated copy.
fn start_hub() -> FakeHub {
    let mut repo = Repo::new("arcane-test/gpt2", B, files_of("gpt2"));
    repo.commits.insert(A.into(), files_of("gpt2"));
    repo.refs.insert("v1".into(), A.into());
    let mut gated = Repo::new("arcane-test/gated", A, files_of("gpt2"));
    gated.gated = true;
    FakeHub::start(vec![repo, gated])
}

/// The binary with the Hub's environment pointing at `endpoint` and a cache under `home`
/// (and none of the caller's Hub settings).
fn with_hub(endpoint: &str, home: &Path) -> Command {
    let mut cmd = bin();
    for var in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HUB_CACHE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HF_ENDPOINT", endpoint).env("HF_HOME", home);
    cmd
}

fn generate(cmd: &mut Command, model: &Path) -> Output {
    cmd.args([
        "generate",
        "--json",
        "--temperature",
        "0",
        "--max-new-tokens",
        "6",
    ])
    .args(["--prompt", "The whale"])
    .arg("--model")
    .arg(model)
    .output()
    .unwrap()
}

fn ids(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["ids"].clone()
}

#[test]
fn a_hub_model_generates_like_its_folder_and_then_offline_without_a_server() {
    let hub = start_hub();
    let home = tempfile::tempdir().unwrap();
    let local = ids(&generate(&mut bin(), &fixture("gpt2")));
    let out = generate(
        &mut with_hub(&hub.endpoint(), home.path()),
        Path::new("arcane-test/gpt2"),
    );
    assert_eq!(ids(&out), local);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("resolved arcane-test/gpt2@main to commit {B}")),
        "{stderr}"
    );
    // HF_HOME placed the cache.
    let snapshot = home
        .path()
        .join(format!("hub/models--arcane-test--gpt2/snapshots/{B}"));
    assert!(snapshot.join("model.safetensors").is_file());
    let seen = hub.requests().len();
    hub.stop();
    let mut offline = with_hub("http://127.0.0.1:9", home.path());
    offline.env("HF_HUB_OFFLINE", "1");
    let out = generate(&mut offline, Path::new("arcane-test/gpt2"));
    assert_eq!(ids(&out), local);
    assert!(String::from_utf8_lossy(&out.stderr).contains("from the cache"));
    assert!(seen >= 4);
    // Offline, a revision never fetched is an error that names the cache.
    let mut offline = with_hub("http://127.0.0.1:9", home.path());
    offline.env("HF_HUB_OFFLINE", "1");
    let out = generate(&mut offline, Path::new("arcane-test/gpt2@v1"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HF_HUB_OFFLINE") && stderr.contains("models--arcane-test--gpt2"),
        "{stderr}"
    );
}

#[test]
fn a_gated_repository_without_a_token_exits_1_with_the_hint() {
    let hub = start_hub();
    let home = tempfile::tempdir().unwrap();
    let out = generate(
        &mut with_hub(&hub.endpoint(), home.path()),
        Path::new("arcane-test/gated"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("gated repository") && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );
    // The token file under HF_HOME is read, as Python's login writes it.
    std::fs::write(home.path().join("token"), format!("{}\n", fake_hub::TOKEN)).unwrap();
    let local = ids(&generate(&mut bin(), &fixture("gpt2")));
    let out = generate(
        &mut with_hub(&hub.endpoint(), home.path()),
        Path::new("arcane-test/gated"),
    );
    assert_eq!(ids(&out), local);
}

#[test]
fn a_finetune_records_the_commit_of_its_hub_base() {
    let hub = start_hub();
    let home = tempfile::tempdir().unwrap();
    let text = home.path().join("small.txt");
    let eval = std::fs::read_to_string(fixture("eval.txt")).unwrap();
    std::fs::write(&text, eval.repeat(2)).unwrap();
    let run = home.path().join("run");
    let out = with_hub(&hub.endpoint(), home.path())
        .args([
            "finetune",
            "--no-dashboard",
            "--lora-rank",
            "2",
            "--max-steps",
            "2",
        ])
        .args(["--eval-every", "2", "--micro-batch", "2", "--seq-len", "32"])
        .args(["--model", "arcane-test/gpt2@v1", "--data"])
        .arg(&text)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["finetune"]["hub"],
        serde_json::json!({"repo": "arcane-test/gpt2", "revision": "v1", "commit": A})
    );
    let base = config["finetune"]["base"].as_str().unwrap();
    assert!(
        base.ends_with(&format!("models--arcane-test--gpt2/snapshots/{A}")),
        "{base}"
    );
    let adapter: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("adapter.json")).unwrap()).unwrap();
    assert_eq!(adapter["base_source"], format!("arcane-test/gpt2@{A}"));
}

#[test]
fn dpo_records_the_commit_of_its_hub_base() {
    let hub = start_hub();
    let home = tempfile::tempdir().unwrap();
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../arcane/data/sentiment/pairs_train.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(source)
        .unwrap()
        .lines()
        .take(8)
        .map(str::to_string)
        .collect();
    let pairs = home.path().join("pairs.jsonl");
    std::fs::write(&pairs, lines.join("\n") + "\n").unwrap();
    let out_dir = home.path().join("dpo");
    let out = with_hub(&hub.endpoint(), home.path())
        .args([
            "dpo",
            "--max-steps",
            "1",
            "--batch",
            "4",
            "--lora-rank",
            "2",
        ])
        .args(["--model", "arcane-test/gpt2", "--data"])
        .arg(&pairs)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("align.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["model_source"],
        serde_json::json!({"repo": "arcane-test/gpt2", "revision": "main", "commit": B})
    );
    assert_eq!(record["model"], "arcane-test/gpt2");
}

#[test]
fn a_download_killed_with_its_process_is_never_used_and_resumes() {
    let hub = start_hub();
    let home = tempfile::tempdir().unwrap();
    let weights = std::fs::read(fixture("gpt2").join("model.safetensors")).unwrap();
    let sha = fake_hub::sha256(&weights);
    let cut = 300_000;
    hub.stall_next(&weights, cut);
    let mut child = with_hub(&hub.endpoint(), home.path())
        .args([
            "generate",
            "--prompt",
            "The whale",
            "--model",
            "arcane-test/gpt2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let root = home.path().join("hub/models--arcane-test--gpt2");
    let partial = root.join(format!("blobs/{sha}.incomplete"));
    let started = std::time::Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < cut as u64 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the download did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();
    assert!(
        !root.join(format!("blobs/{sha}")).exists(),
        "a truncated blob under its final name"
    );
    assert!(!root
        .join(format!("snapshots/{B}/model.safetensors"))
        .exists());
    assert!(!root.join("refs/main").exists());
    // The next run resumes from the partial file and generates as the fixture does.
    let local = ids(&generate(&mut bin(), &fixture("gpt2")));
    let out = generate(
        &mut with_hub(&hub.endpoint(), home.path()),
        Path::new("arcane-test/gpt2"),
    );
    assert_eq!(ids(&out), local);
    assert!(hub
        .requests()
        .contains(&format!("GET /cdn/{sha} range=bytes={cut}-")));
    assert_eq!(
        std::fs::read(root.join(format!("blobs/{sha}"))).unwrap(),
        weights
    );
}
