//! `arcane::load_model` / `load_tokenizer` with a Hub id, configured by the environment as a
//! user's process is (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`). One test in its own
//! process, so that setting variables and the working folder cannot race other tests.
#![cfg(feature = "hub")]

mod common;
mod fake_hub;

use std::path::Path;

use common::{fixture, tokens, values, TestBackend};
use fake_hub::{FakeHub, File, Repo};

const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

fn files_of(name: &str) -> Vec<File> {
    std::fs::read_dir(fixture(name))
        .unwrap()
        .flatten()
        .map(|e| {
            File::new(
                &e.file_name().to_string_lossy(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn logits(model: &Path) -> Vec<f32> {
    let device = Default::default();
    let model = arcane::load_model::<TestBackend>(model, &device).unwrap();
    values(model.forward(tokens::<TestBackend>(&[3, 1, 4, 1, 5], &device)))
}

#[test]
fn the_library_loads_hub_ids_from_the_environment_and_a_local_folder_wins() {
    let hub = FakeHub::start(vec![Repo::new("arcane-test/env", C, files_of("llama"))]);
    let work = tempfile::tempdir().unwrap();
    for var in [
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HUGGINGFACE_HUB_CACHE",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("HF_ENDPOINT", format!("{}/", hub.endpoint()));
    std::env::set_var("HF_HUB_CACHE", work.path().join("cache"));
    std::env::set_var("HF_HOME", work.path().join("home"));
    let id = Path::new("arcane-test/env");
    // Run from a folder without `arcane-test/env`: the id goes to the Hub.
    let llama = logits(&fixture("llama"));
    std::env::set_current_dir(work.path()).unwrap();
    assert_eq!(logits(id), llama);
    let tokenizer = arcane::load_tokenizer(id).unwrap();
    let name = tokenizer.name();
    assert!(
        name.contains(&format!("snapshots/{C}/tokenizer.json")),
        "{name}"
    );
    let snapshot = work
        .path()
        .join(format!("cache/models--arcane-test--env/snapshots/{C}"));
    assert!(snapshot.join("tokenizer.json").is_file());
    // Offline: no request.
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let seen = hub.requests().len();
    assert_eq!(logits(id), llama);
    assert_eq!(hub.requests().len(), seen);
    // A local folder of that name wins over the Hub.
    std::fs::create_dir_all(work.path().join("arcane-test")).unwrap();
    let local = work.path().join("arcane-test/env");
    std::fs::create_dir(&local).unwrap();
    for f in files_of("gpt2") {
        std::fs::write(local.join(&f.path), &f.bytes).unwrap();
    }
    std::env::remove_var("HF_HUB_OFFLINE");
    let gpt2 = logits(&fixture("gpt2"));
    assert_eq!(logits(id), gpt2);
    assert_eq!(hub.requests().len(), seen);
}
