//! The bundled sentiment data: the derived files in `arcane/data/sentiment/` are exactly what
//! the library derives from the sentences (rewrite them with `ARCANE_BLESS=1`), in TRL's
//! formats, and the loaders read them back; reward models are refused for policies they
//! cannot read.

use std::path::PathBuf;

use arcane::align::sentiment::{write_derived, DERIVED_FILES};
use arcane::align::{
    check_reward_compatible, load_pairs, load_prompts, tokenize_pairs, RewardManifest,
};
use arcane::{ModelConfig, ModelTokenizer};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sentiment")
}

#[test]
fn the_bundled_derived_files_are_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let split = write_derived(tmp.path()).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (2400, 600));
    if std::env::var_os("ARCANE_BLESS").is_some() {
        write_derived(&data_dir()).unwrap();
    }
    for name in DERIVED_FILES {
        let fresh = std::fs::read(tmp.path().join(name)).unwrap();
        let bundled = std::fs::read(data_dir().join(name)).unwrap_or_default();
        assert!(
            fresh == bundled,
            "{name} differs from its derivation; rerun with ARCANE_BLESS=1"
        );
    }
    let (train, bad) = load_pairs(&data_dir().join("pairs_train.jsonl"), false).unwrap();
    assert!(bad.is_empty());
    assert_eq!(train.len(), 2400);
    let (test, _) = load_pairs(&data_dir().join("pairs_test.jsonl"), false).unwrap();
    assert_eq!(test.len(), 300);
    // The held-out pairs share no sentence with the training pairs.
    let seen: std::collections::HashSet<&str> = train
        .iter()
        .flat_map(|p| [p.chosen.as_str(), p.rejected.as_str()])
        .collect();
    let shared = test
        .iter()
        .filter(|p| seen.contains(p.chosen.as_str()) || seen.contains(p.rejected.as_str()))
        .count();
    // Only sentences that occur twice in the data (e.g. "Works great.") may appear in both.
    assert!(
        shared <= 10,
        "{shared} held-out pairs reuse training sentences"
    );
    let (prompts, _) = load_prompts(&data_dir().join("prompts_test.jsonl"), false).unwrap();
    assert!(prompts.len() > 400);
    assert!(prompts
        .iter()
        .all(|p| p.prompt.split_whitespace().count() == 4));
    let tokens = tokenize_pairs(&test[..1], &ModelTokenizer::gpt2()).unwrap();
    assert!(tokens[0].prompt.is_empty() && !tokens[0].chosen.is_empty());
}

fn manifest(vocab_size: usize, tokenizer: &str) -> RewardManifest {
    RewardManifest {
        format: "arcane-reward".into(),
        version: 1,
        base_config: ModelConfig {
            vocab_size,
            ..ModelConfig::tiny()
        },
        tokenizer: tokenizer.into(),
        base_source: "test".into(),
    }
}

#[test]
fn reward_models_that_cannot_read_the_policy_are_refused() {
    let policy = ModelConfig {
        vocab_size: 50304,
        ..ModelConfig::tiny()
    };
    assert!(check_reward_compatible(&manifest(50257, "gpt2"), &policy, "gpt2", 24).is_ok());
    let err = check_reward_compatible(&manifest(512, "gpt2"), &policy, "gpt2", 24).unwrap_err();
    assert!(err.to_string().contains("vocabulary of 512"), "{err}");
    let err = check_reward_compatible(&manifest(50257, "llama"), &policy, "gpt2", 24).unwrap_err();
    assert!(err.to_string().contains("reads llama tokens"), "{err}");
    let err = check_reward_compatible(&manifest(50257, "gpt2"), &policy, "gpt2", 65).unwrap_err();
    assert!(err.to_string().contains("context is 64"), "{err}");
}
