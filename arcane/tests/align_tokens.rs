//! Alignment on a model's own tokenizer: preference pairs and prompts get the ids of the
//! Python `tokenizers` library for the model's `tokenizer.json`, the prompt's BOS exactly once
//! (as `tokenizer(prompt)` gives it), a reward model's tokenizer identity tells tokenizers
//! apart, and rollouts and generation end at any of the model's `eos_token_id`s.

mod common;

use arcane::align::{
    bos_of, check_reward_compatible, model_tokenizer, prompt_ids, tokenize_pairs, PreferencePair,
    RewardManifest, RolloutConfig,
};
use arcane::checkpoint::load_config;
use arcane::generation::eos_ids;
use arcane::load_tokenizer;
use common::{edited_copy, fixture, ids, tokenizer_reference};

/// The reference ids of `text`: with the special tokens `tokenizer(text)` adds, and without.
fn reference_ids(text: &str) -> (Vec<u32>, Vec<u32>) {
    let r = &tokenizer_reference()["strings"][text];
    (ids(&r["ids"]), ids(&r["ids_no_special"]))
}

fn pair(prompt: &str, chosen: &str, rejected: &str) -> PreferencePair {
    PreferencePair {
        prompt: prompt.into(),
        chosen: chosen.into(),
        rejected: rejected.into(),
        margin: None,
    }
}

#[test]
fn pairs_get_the_llama_tokenizer_ids_with_one_bos() {
    let tokenizer = load_tokenizer(&fixture("llama")).unwrap();
    let config = load_config(&fixture("llama")).unwrap();
    let (prompt, chosen, rejected) = ("Hello world", "Call me Ishmael.", "The whale, the whale!");
    let tokens = tokenize_pairs(&[pair(prompt, chosen, rejected)], &tokenizer).unwrap();
    let (with_bos, plain) = reference_ids(prompt);
    assert_eq!(with_bos[0], 1, "the fixture's tokenizer adds <s>");
    assert_eq!(tokens[0].prompt, plain);
    assert_eq!(tokens[0].chosen, reference_ids(chosen).1);
    assert_eq!(tokens[0].rejected, reference_ids(rejected).1);
    // The sequence the model reads: `tokenizer(prompt)` (its <s> once) + the completion.
    assert_eq!(bos_of(&config), 1);
    let (seq, _) = tokens[0].sequences(bos_of(&config), 64);
    assert_eq!(
        seq.ids,
        [with_bos.clone(), reference_ids(chosen).1].concat()
    );
    assert_eq!(seq.prompt_len, with_bos.len());
    // An empty prompt: the BOS alone.
    let empty = tokenize_pairs(&[pair("", chosen, rejected)], &tokenizer).unwrap();
    assert!(empty[0].prompt.is_empty());
    assert_eq!(prompt_ids(&tokenizer, prompt).unwrap(), plain);
}

#[test]
fn a_tokenizer_without_bos_keeps_every_prompt_id() {
    // Qwen's tokenizer adds no BOS: the prompt ids are the text's, and the sequence opens with
    // the config's bos_token_id (Qwen's <|endoftext|>) as GPT-2's opens with its end-of-text.
    let dir = edited_copy("qwen2", |d| {
        let path = d.join("tokenizer.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        json["post_processor"] = serde_json::Value::Null;
        std::fs::write(&path, json.to_string()).unwrap();
    });
    let tokenizer = load_tokenizer(dir.path()).unwrap();
    let text = "Call me Ishmael.";
    let plain = reference_ids(text).1;
    assert_eq!(tokenizer.encode_prompt(text).unwrap(), plain);
    assert_eq!(prompt_ids(&tokenizer, text).unwrap(), plain);
    assert_eq!(bos_of(&load_config(dir.path()).unwrap()), 1);
    // Another tokenizer file: another identity.
    assert_ne!(
        model_tokenizer(dir.path()).unwrap(),
        model_tokenizer(&fixture("qwen2")).unwrap()
    );
}

#[test]
fn reward_models_are_matched_by_tokenizer_identity() {
    let llama = model_tokenizer(&fixture("llama")).unwrap();
    assert!(llama.starts_with("tokenizer.json sha256:"), "{llama}");
    // The Qwen2 fixture ships the very same tokenizer.json: the same ids, the same identity.
    assert_eq!(model_tokenizer(&fixture("qwen2")).unwrap(), llama);
    assert_eq!(model_tokenizer(&fixture("gpt2")).unwrap(), "gpt2");
    let config = load_config(&fixture("llama")).unwrap();
    let manifest = RewardManifest {
        format: "arcane-reward".into(),
        version: 1,
        base_config: config.clone(),
        tokenizer: llama.clone(),
        base_source: "llama".into(),
    };
    assert!(check_reward_compatible(&manifest, &config, &llama, 32).is_ok());
    let err = check_reward_compatible(&manifest, &config, "gpt2", 32)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&llama) && err.contains("gpt2"), "{err}");
}

#[test]
fn rollouts_and_generation_end_at_any_eos_id() {
    // Llama 3's config.json lists eos_token_id [2, 3].
    let config = load_config(&fixture("llama3")).unwrap();
    let rollout = RolloutConfig::for_model(&config, 8, 1.0);
    assert_eq!(rollout.eos, [2, 3]);
    assert_eq!(rollout.valid_len(&[5, 6, 3, 7, 2]), 3);
    assert_eq!(rollout.text_part(&[5, 2, 3]), [5]);
    // GPT-2's: end-of-text alone.
    let gpt2 = RolloutConfig::for_model(&load_config(&fixture("gpt2")).unwrap(), 8, 1.0);
    assert_eq!(gpt2.eos, [50256]);
    // generate: the tokenizer's eos and generation_config.json's list, which wins over
    // config.json's.
    let dir = edited_copy("llama3", |d| {
        std::fs::write(
            d.join("generation_config.json"),
            r#"{"bos_token_id": 1, "eos_token_id": [2, 7, 9]}"#,
        )
        .unwrap();
    });
    let tokenizer = load_tokenizer(dir.path()).unwrap();
    assert_eq!(eos_ids(&tokenizer, Some(dir.path())), [2, 7, 9]);
    assert_eq!(eos_ids(&tokenizer, None), [2]);
}
