//! `arcane-cli chat` through the binary: the rendered prompt and its ids are transformers'
//! (`fixtures/chat/reference.json`), a greedy reply of the Llama fixture model through Zephyr's
//! template is transformers' `generate`, and a second turn typed on stdin (the KV cache reused)
//! gives the ids of a fresh run on the whole conversation.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{bin, fails, fixture, ok};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("chat/reference.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// A model folder: the Llama fixture's weights and config, with `edit` applied to its
/// config.json, and the files of chat fixture `family` (tokenizer, template) beside them.
fn model_with(family: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
    ] {
        std::fs::copy(fixture("llama").join(file), dir.path().join(file)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama/config.json")).unwrap())
            .unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    if !family.is_empty() {
        for entry in std::fs::read_dir(fixture(&format!("chat/{family}")))
            .unwrap()
            .flatten()
        {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn json_line(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

#[test]
fn print_prompt_gives_transformers_text_and_ids() {
    let r = reference();
    let mut checked = 0;
    for (family, case_name) in [
        ("chatml", "multi"),
        ("chatml", "no_system"),
        ("chatml", "continue"),
        ("mistral", "multi"),
        ("gemma", "multi"),
        ("phi3", "hello"),
        ("zephyr", "multi"),
        ("pyfeatures", "features"),
    ] {
        // Only the tokenizer and config are read: a vocabulary wide enough for added tokens.
        let dir = model_with(family, |c| c["vocab_size"] = 1024.into());
        let case = r["families"][family]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == case_name)
            .max_by_key(|c| c["add_generation_prompt"] == true)
            .unwrap();
        let messages = write(
            dir.path(),
            "m.json",
            case["messages_json"].as_str().unwrap(),
        );
        let out = json_line(&ok(bin().args([
            "chat",
            "--model",
            dir.path().to_str().unwrap(),
            "--messages",
            &messages,
            "--print-prompt",
            "--json",
        ])));
        assert_eq!(out["text"], case["text"], "{family}/{case_name}");
        assert_eq!(ids(&out["ids"]), ids(&case["ids"]), "{family}/{case_name}");
        checked += 1;
    }
    assert_eq!(checked, 8);
}

/// The Llama fixture with Zephyr's template, its context widened to 256 (RoPE: positions
/// below 64 are unchanged, and transformers' model has no such limit).
fn zephyr_model() -> tempfile::TempDir {
    model_with("zephyr", |c| c["max_position_embeddings"] = 256.into())
}

#[test]
fn a_greedy_reply_is_transformers_generate() {
    let cli = &reference()["cli"];
    let dir = zephyr_model();
    let messages = write(dir.path(), "m.json", &cli["messages"].to_string());
    let out = json_line(&ok(bin().args([
        "chat",
        "--model",
        dir.path().to_str().unwrap(),
        "--messages",
        &messages,
        "--temperature",
        "0",
        "--max-new-tokens",
        &cli["max_new_tokens"].to_string(),
        "--json",
    ])));
    assert_eq!(ids(&out["ids"]), ids(&cli["reply_ids"]));
    assert_eq!(out["reply"], cli["reply_text"]);
}

#[test]
fn a_second_turn_on_stdin_reuses_the_cache_and_matches_a_fresh_run() {
    let cli = &reference()["cli"];
    let dir = zephyr_model();
    let mut child = bin()
        .args([
            "chat",
            "--model",
            dir.path().to_str().unwrap(),
            "--temperature",
            "0",
            "--max-new-tokens",
            &cli["max_new_tokens"].to_string(),
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = cli["messages"][0]["content"].as_str().unwrap();
    let second = cli["second_user"].as_str().unwrap();
    write!(child.stdin.take().unwrap(), "{first}\n{second}\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(json_line)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(ids(&lines[0]["ids"]), ids(&cli["reply_ids"]));
    assert_eq!(ids(&lines[1]["ids"]), ids(&cli["second_reply_ids"]));
    // The second prompt came mostly from the cache: "prompt N tokens, K from the cache".
    let reused: Vec<(usize, usize)> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split("prompt ").nth(1)?;
            let (n, rest) = rest.split_once(" tokens, ")?;
            let k = rest.split(' ').next()?;
            Some((n.parse().ok()?, k.parse().ok()?))
        })
        .collect();
    let second_len = cli["second_prompt_ids"].as_array().unwrap().len();
    assert_eq!(reused.len(), 2, "{stderr}");
    assert_eq!(reused[0], (cli["prompt_ids"].as_array().unwrap().len(), 0));
    assert_eq!(reused[1].0, second_len);
    assert!(
        reused[1].1 >= cli["prompt_ids"].as_array().unwrap().len(),
        "the first prompt is reused: {stderr}"
    );
}

#[test]
fn templates_come_from_a_flag_and_their_exceptions_are_errors() {
    // The plain Llama fixture has no template: a clear error that names --template.
    let dir = model_with("", |_| {});
    let messages = write(
        dir.path(),
        "m.json",
        r#"[{"role": "user", "content": "hi"}]"#,
    );
    let model = dir.path().to_str().unwrap().to_string();
    let err = fails(bin().args([
        "chat",
        "--model",
        &model,
        "--messages",
        &messages,
        "--print-prompt",
    ]));
    assert!(
        err.contains("no chat template") && err.contains("--template"),
        "{err}"
    );
    let template = write(
        dir.path(),
        "t.jinja",
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    );
    let out = ok(bin().args([
        "chat",
        "--model",
        &model,
        "--messages",
        &messages,
        "--print-prompt",
        "--template",
        &template,
    ]));
    assert_eq!(out, "<user>hi");
    // A tokenizer_config.json (or chat_template.json) as --template: its chat_template entry.
    let zephyr_config = fixture("chat/zephyr/tokenizer_config.json");
    let out = ok(bin().args([
        "chat",
        "--model",
        &model,
        "--messages",
        &messages,
        "--print-prompt",
        "--template",
        zephyr_config.to_str().unwrap(),
    ]));
    assert_eq!(out, "<|user|>\nhi</s>\n<|assistant|>\n");
    // --system opens the conversation.
    let out = ok(bin().args([
        "chat",
        "--model",
        &model,
        "--messages",
        &messages,
        "--print-prompt",
        "--template",
        &template,
        "--system",
        "be kind",
    ]));
    assert_eq!(out, "<system>be kind<user>hi");
    // Mistral's template refuses two user turns in a row, with its own message.
    let mistral = model_with("mistral", |_| {});
    let bad = write(
        mistral.path(),
        "bad.json",
        r#"[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]"#,
    );
    let err = fails(bin().args([
        "chat",
        "--model",
        mistral.path().to_str().unwrap(),
        "--messages",
        &bad,
        "--print-prompt",
    ]));
    assert!(err.contains("conversation roles must alternate"), "{err}");
    let broken = write(dir.path(), "broken.json", r#"{"role": "user"}"#);
    let err = fails(bin().args([
        "chat",
        "--model",
        &model,
        "--messages",
        &broken,
        "--print-prompt",
        "--template",
        &template,
    ]));
    assert!(
        err.contains("broken.json") && err.contains("list of messages"),
        "{err}"
    );
}

#[test]
fn evaluations_say_which_special_tokens_they_used() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(
        dir.path(),
        "t.txt",
        "Call me Ishmael. Some years ago, never mind how long.",
    );
    let loss = |model: &str| {
        json_line(&ok(bin().args([
            "eval",
            "loss",
            "--model",
            fixture(model).to_str().unwrap(),
            "--text",
            &text,
            "--json",
        ])))
    };
    let llama = loss("llama");
    assert_eq!(llama["special_tokens"], "adds BOS <s> (tokenizer.json)");
    let gpt2 = loss("gpt2");
    assert_eq!(gpt2["special_tokens"], "adds nothing (gpt2)");
    // Llama's text is scored as `tokenizer(text)` encodes it: with the BOS in front, so every
    // token of the text is predicted.
    let content = std::fs::read_to_string(&text).unwrap();
    let tokenizer = arcane::load_tokenizer(&fixture("llama")).unwrap();
    let with_bos = tokenizer.encode_prompt(&content).unwrap();
    assert_eq!(
        with_bos.len(),
        tokenizer.encode(&content).unwrap().len() + 1
    );
    assert_eq!(
        llama["tokens"].as_u64().unwrap() as usize,
        with_bos.len() - 1
    );
    let hellaswag = json_line(&ok(bin().args([
        "eval",
        "hellaswag",
        "--model",
        fixture("gpt2").to_str().unwrap(),
        "--data",
        fixture("hellaswag.jsonl").to_str().unwrap(),
        "--limit",
        "1",
        "--json",
    ])));
    assert_eq!(
        hellaswag["special_tokens"],
        "none added (plain text; the tokenizer adds nothing (gpt2))"
    );
}

#[test]
fn an_arcane_model_chats_in_chatml_once_it_has_the_tokens() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_padded_gpt2(dir.path());
    let model_dir = dir.path().to_str().unwrap();
    let messages = write(
        dir.path(),
        "m.json",
        r#"[{"role": "user", "content": "Hello!"}]"#,
    );
    let err = fails(bin().args([
        "chat",
        "--model",
        model_dir,
        "--messages",
        &messages,
        "--print-prompt",
    ]));
    assert!(
        err.contains("no ChatML") && err.contains("--template"),
        "{err}"
    );
    arcane::chat::enable_chatml(dir.path()).unwrap();
    let prompt = json_line(&ok(bin().args([
        "chat",
        "--model",
        model_dir,
        "--messages",
        &messages,
        "--print-prompt",
        "--json",
    ])));
    assert_eq!(
        prompt["text"],
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    let prompt_ids = ids(&prompt["ids"]);
    let count = |id: u64| prompt_ids.iter().filter(|&&i| i == id).count();
    assert_eq!((prompt_ids[0], count(50257), count(50258)), (50257, 2, 1));
    assert!(prompt_ids.iter().all(|&id| id < 50259));
    let reply = json_line(&ok(bin().args([
        "chat",
        "--model",
        model_dir,
        "--messages",
        &messages,
        "--temperature",
        "0",
        "--max-new-tokens",
        "4",
        "--json",
    ])));
    // Never a padding row past the tokenizer's 50259 ids.
    let reply_ids = ids(&reply["ids"]);
    assert!(
        !reply_ids.is_empty() && reply_ids.iter().all(|&id| id < 50259),
        "{reply_ids:?}"
    );
}

#[test]
fn a_reply_stops_at_any_eos_id_of_generation_config() {
    // transformers' greedy reply starts with id `first`; listed as an eos id (a list, as
    // Llama 3's), it ends the reply right there.
    let cli = &reference()["cli"];
    let first = cli["reply_ids"][0].as_u64().unwrap();
    let dir = zephyr_model();
    let generation = format!(r#"{{"eos_token_id": [2, {first}]}}"#);
    write(dir.path(), "generation_config.json", &generation);
    let messages = write(dir.path(), "m.json", &cli["messages"].to_string());
    let out = bin()
        .args([
            "chat",
            "--model",
            dir.path().to_str().unwrap(),
            "--messages",
            &messages,
            "--temperature",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reply = json_line(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(ids(&reply["ids"]), vec![first]);
    assert_eq!(reply["reply"], "");
    assert!(stderr.contains("generated end-of-text"), "{stderr}");
}
