//! Chat templates against transformers: `fixtures/chat/reference.json` holds what
//! `apply_chat_template` gave (text and ids) for seven template families, written by
//! `scripts/make_chat_reference.py`. Every case must match byte for byte; a template's
//! `raise_exception` must be a typed error carrying the template's message.

mod common;

use std::path::{Path, PathBuf};

use arcane::chat::{
    self, ChatTemplate, Clock, Conversation, Message, RenderOptions, TemplateValue,
};
use arcane::tokenizer::{ModelTokenizer, TOKENIZER_CONFIG_FILE};
use arcane::ArcaneError;
use common::{fixture, ids};
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("chat/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn family_dir(family: &str) -> PathBuf {
    fixture(&format!("chat/{family}"))
}

/// The template a family's folder holds (Arcane's ChatML for `arcane_chatml`), on the clock
/// the reference was made with.
fn template_of(family: &str) -> ChatTemplate {
    let dir = family_dir(family);
    if family == "arcane_chatml" {
        let tokens = arcane::tokenizer::TokenizerConfig::from_dir(&dir)
            .unwrap()
            .special_tokens;
        return chat::chatml().with_special_tokens(tokens);
    }
    ChatTemplate::from_dir(&dir)
        .unwrap()
        .unwrap_or_else(|| panic!("{family} has a template"))
}

/// Render options of a reference case: its kwargs (tools, date_string, ...) and template name.
fn options_of(case: &Value, clock: &Clock) -> RenderOptions {
    let kwargs = chat::parse_json(case["kwargs_json"].as_str().unwrap()).unwrap();
    let mut options = RenderOptions {
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
        template_name: case["template_name"].as_str().map(str::to_string),
        clock: clock.clone(),
        ..RenderOptions::default()
    };
    for key in kwargs.try_iter().unwrap() {
        let value = kwargs.get_item(&key).unwrap();
        match key.as_str().unwrap() {
            "tools" => options.tools = Some(value),
            "continue_final_message" => options.continue_final_message = value.is_true(),
            name => options.kwargs.push((name.to_string(), value)),
        }
    }
    options
}

#[test]
fn every_family_renders_and_encodes_as_transformers() {
    let r = reference();
    let clock = Clock::fixed(r["fixed_now"].as_str().unwrap()).unwrap();
    let mut checked = 0;
    for (family, entry) in r["families"].as_object().unwrap() {
        let template = template_of(family);
        let tokenizer =
            ModelTokenizer::from_file(&family_dir(family).join("tokenizer.json")).unwrap();
        for case in entry["cases"].as_array().unwrap() {
            let label = format!(
                "{family}/{} (add_generation_prompt={})",
                case["name"], case["add_generation_prompt"]
            );
            let conversation =
                Conversation::from_json(case["messages_json"].as_str().unwrap()).unwrap();
            let rendered = template.render(&conversation, &options_of(case, &clock));
            if let Some(message) = case["error"].as_str() {
                match rendered {
                    Err(ArcaneError::ChatTemplate { message: m }) => {
                        assert_eq!(m, message, "{label}")
                    }
                    other => panic!("{label}: expected the template's exception, got {other:?}"),
                }
                continue;
            }
            let text = rendered.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(text, case["text"].as_str().unwrap(), "{label}: text");
            assert_eq!(
                tokenizer.encode_chat(&text).unwrap(),
                ids(&case["ids"]),
                "{label}: ids"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} cases compared");
}

#[test]
fn prompts_get_the_special_tokens_transformers_adds() {
    let r = reference();
    for (family, entry) in r["families"].as_object().unwrap() {
        let tokenizer =
            ModelTokenizer::from_file(&family_dir(family).join("tokenizer.json")).unwrap();
        for (text, expected) in entry["encode"].as_object().unwrap() {
            assert_eq!(
                tokenizer.encode_prompt(text).unwrap(),
                ids(expected),
                "{family}: tokenizer({text:?})"
            );
        }
        let policy = tokenizer.special_tokens_policy();
        let adds_bos = ids(&entry["encode"]["Hello world"]).len()
            > tokenizer.encode("Hello world").unwrap().len();
        assert_eq!(!policy.adds_nothing(), adds_bos, "{family}: {policy}");
    }
    let llama3 = ModelTokenizer::from_file(&family_dir("llama3").join("tokenizer.json")).unwrap();
    assert_eq!(
        llama3.special_tokens_policy().to_string(),
        "adds BOS <|begin_of_text|> (tokenizer.json)"
    );
    let chatml = ModelTokenizer::from_file(&family_dir("chatml").join("tokenizer.json")).unwrap();
    assert_eq!(
        chatml.special_tokens_policy().to_string(),
        "adds nothing (tokenizer.json)"
    );
    assert_eq!(
        ModelTokenizer::gpt2().special_tokens_policy().to_string(),
        "adds nothing (gpt2)"
    );
}

/// A copy of a family folder with `edit` applied.
fn edited_family(family: &str, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(family_dir(family)).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    edit(dir.path());
    dir
}

fn set_config(dir: &Path, key: &str, value: Value) {
    let path = dir.join(TOKENIZER_CONFIG_FILE);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn add_bos_and_eos_switches_of_tokenizer_config_win() {
    // Mistral's tokenizer.json adds <s>; older repositories also say so (or not) in
    // tokenizer_config.json, and transformers 4.x's LlamaTokenizerFast followed the switches.
    let plain = ModelTokenizer::from_file(&family_dir("mistral").join("tokenizer.json")).unwrap();
    let text_ids = plain.encode("Call me").unwrap();
    let off = edited_family("mistral", |d| {
        set_config(d, "add_bos_token", Value::Bool(false))
    });
    let off = ModelTokenizer::from_file(&off.path().join("tokenizer.json")).unwrap();
    assert_eq!(off.encode_prompt("Call me").unwrap(), text_ids);
    assert_eq!(
        off.special_tokens_policy().to_string(),
        "adds nothing (tokenizer_config.json)"
    );
    let both = edited_family("mistral", |d| {
        set_config(d, "add_bos_token", Value::Bool(true));
        set_config(d, "add_eos_token", Value::Bool(true));
    });
    let both = ModelTokenizer::from_file(&both.path().join("tokenizer.json")).unwrap();
    let mut expected = vec![1];
    expected.extend(&text_ids);
    expected.push(2);
    assert_eq!(both.encode_prompt("Call me").unwrap(), expected);
    assert_eq!(
        both.special_tokens_policy().to_string(),
        "adds BOS <s> and EOS </s> (tokenizer_config.json)"
    );
    // A chat prompt never gets them: the template wrote its own.
    assert_eq!(both.encode_chat("<s> [INST] hi").unwrap()[0], 1);
    assert_eq!(
        both.encode_chat("<s> [INST] hi")
            .unwrap()
            .iter()
            .filter(|&&id| id == 1)
            .count(),
        1
    );
}

#[test]
fn raise_exception_is_a_typed_error_with_the_templates_message() {
    let template = template_of("gemma");
    let conversation =
        Conversation::from_messages(&[Message::new("user", "hi"), Message::new("user", "again")]);
    let err = template
        .render(&conversation, &RenderOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, ArcaneError::ChatTemplate { message } if message == "Conversation roles must alternate user/assistant/user/assistant/..."),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("refused this conversation"),
        "{err}"
    );
}

#[test]
fn strftime_now_reads_the_clock() {
    let template = ChatTemplate::new("{{ strftime_now('%d %b %Y %H:%M:%S') }}", "inline");
    let conversation = Conversation::from_messages(&[Message::new("user", "x")]);
    let options = RenderOptions {
        clock: Clock::fixed("1999-12-31T23:59:58").unwrap(),
        ..RenderOptions::default()
    };
    assert_eq!(
        template.render(&conversation, &options).unwrap(),
        "31 Dec 1999 23:59:58"
    );
    // The system clock gives today's date.
    let now = template
        .render(&conversation, &RenderOptions::default())
        .unwrap();
    assert_eq!(now.len(), "31 Dec 1999 23:59:58".len(), "{now}");
    assert!(Clock::fixed("yesterday").is_err());
}

#[test]
fn templates_are_found_in_all_three_places_jinja_first() {
    // tokenizer_config.json (string): chatml; chat_template.jinja: llama3; chat_template.json:
    // mistral; named list: zephyr.
    for (family, file) in [
        ("chatml", "tokenizer_config.json"),
        ("llama3", "chat_template.jinja"),
        ("mistral", "chat_template.json"),
        ("zephyr", "tokenizer_config.json"),
    ] {
        let template = template_of(family);
        assert!(
            template.origin().ends_with(file),
            "{family}: {}",
            template.origin()
        );
    }
    assert_eq!(template_of("zephyr").names(), ["default", "tool_use"]);
    // A chat_template.jinja wins over tokenizer_config.json's entry (as in transformers).
    let both = edited_family("chatml", |d| {
        std::fs::write(
            d.join("chat_template.jinja"),
            "JINJA {{ messages | length }}",
        )
        .unwrap()
    });
    let template = ChatTemplate::from_dir(both.path()).unwrap().unwrap();
    let one = Conversation::from_messages(&[Message::new("user", "x")]);
    assert_eq!(
        template.render(&one, &RenderOptions::default()).unwrap(),
        "JINJA 1"
    );
    // No template anywhere: None, not an error.
    assert!(ChatTemplate::from_dir(&fixture("llama")).unwrap().is_none());
}

#[test]
fn named_templates_pick_tool_use_with_tools_and_refuse_unknown_names() {
    let template = template_of("zephyr");
    let one = Conversation::from_messages(&[Message::new("user", "x")]);
    let tools = chat::parse_json(r#"[{"name": "f"}]"#).unwrap();
    let with_tools = RenderOptions {
        tools: Some(tools),
        ..RenderOptions::default()
    };
    let text = template.render(&one, &with_tools).unwrap();
    assert!(
        text.starts_with("<|tools|>\n[{\"name\": \"f\"}]</s>"),
        "{text:?}"
    );
    let unknown = RenderOptions {
        template_name: Some("rag".into()),
        ..RenderOptions::default()
    };
    let err = template.render(&one, &unknown).unwrap_err().to_string();
    assert!(
        err.contains("\"rag\"") && err.contains("default, tool_use"),
        "{err}"
    );
}

#[test]
fn tojson_is_pythons_json_dumps() {
    let template = ChatTemplate::new(
        "{{ messages[0].meta | tojson }}|{{ messages[0].meta | tojson(ensure_ascii=True, sort_keys=True) }}|{{ '<&>' | tojson }}",
        "inline",
    );
    let conversation = Conversation::from_json(
        r#"[{"role": "user", "content": "", "meta": {"z": {"b": [1, 2.0, null]}, "a": "naïve 😀"}}]"#,
    )
    .unwrap();
    assert_eq!(
        template
            .render(&conversation, &RenderOptions::default())
            .unwrap(),
        r#"{"z": {"b": [1, 2.0, null]}, "a": "naïve 😀"}|{"a": "na\u00efve \ud83d\ude00", "z": {"b": [1, 2.0, null]}}|"<&>""#
    );
}

#[test]
fn syntax_errors_name_the_template_and_line() {
    let template = ChatTemplate::new("line one\n{% if %}", "my.jinja");
    let one = Conversation::from_messages(&[Message::new("user", "x")]);
    let err = template
        .render(&one, &RenderOptions::default())
        .unwrap_err();
    assert!(matches!(err, ArcaneError::Template { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("my.jinja") && text.contains("line 2"),
        "{text}"
    );
    let empty = template.render(&Conversation::new(), &RenderOptions::default());
    assert!(empty.unwrap_err().to_string().contains("empty"));
}

#[test]
fn stop_ids_come_from_the_template_tokenizer_and_model() {
    for (family, token) in [
        ("chatml", "<|im_end|>"),
        ("llama3", "<|eot_id|>"),
        ("gemma", "<end_of_turn>"),
        ("phi3", "<|end|>"),
        ("zephyr", "</s>"),
    ] {
        let tokenizer =
            ModelTokenizer::from_file(&family_dir(family).join("tokenizer.json")).unwrap();
        let stops = chat::stop_ids(&template_of(family), &tokenizer, None);
        let id = tokenizer.token_to_id(token).unwrap();
        assert!(
            stops.contains(&id),
            "{family}: {token} ({id}) not in {stops:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"eos_token_id": [7, 9]}"#,
    )
    .unwrap();
    assert_eq!(chat::model_eos_ids(dir.path()), vec![7, 9]);
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": 5}"#,
    )
    .unwrap();
    assert_eq!(chat::model_eos_ids(dir.path()), vec![5]);
}

#[test]
fn conversations_keep_key_order_for_templates() {
    let value: TemplateValue = chat::parse_json(r#"{"b": 1, "a": 2}"#).unwrap();
    let keys: Vec<String> = value
        .try_iter()
        .unwrap()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["b", "a"]);
}

/// A small Arcane model (GPT-2 tokenizer) with a vocabulary of `vocab_size` rows, saved in `dir`.
fn arcane_model(dir: &Path, vocab_size: usize) {
    let config = arcane::ModelConfig {
        vocab_size,
        d_model: 16,
        n_layers: 1,
        n_heads: 2,
        ..arcane::ModelConfig::tiny()
    };
    let model = config
        .init::<common::TestBackend>(&Default::default())
        .unwrap();
    arcane::save_model(&model, dir).unwrap();
}

#[test]
fn arcane_models_get_chatml_when_a_chat_fine_tune_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    arcane_model(dir.path(), 50304);
    let plain = arcane::load_tokenizer(dir.path()).unwrap();
    assert!(chat::model_template(dir.path(), &plain).unwrap().is_none());
    let tokenizer = chat::enable_chatml(dir.path()).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("arcane.json")).unwrap();
    assert!(manifest.contains("\"gpt2-chatml\""), "{manifest}");
    let loaded = arcane::load_tokenizer(dir.path()).unwrap();
    assert_eq!(loaded.name(), "gpt2-chatml");
    assert_eq!(loaded.vocab_size(), 50259);
    let template = chat::model_template(dir.path(), &loaded).unwrap().unwrap();
    let r = reference();
    let case = &r["families"]["arcane_chatml"]["cases"][1];
    let conversation = Conversation::from_json(case["messages_json"].as_str().unwrap()).unwrap();
    let options = RenderOptions {
        add_generation_prompt: true,
        ..RenderOptions::default()
    };
    let text = template.render(&conversation, &options).unwrap();
    assert_eq!(text, case["text"].as_str().unwrap());
    let ids = tokenizer.encode_chat(&text).unwrap();
    let gpt2 = arcane::Tokenizer::gpt2();
    let mut expected = vec![50257];
    expected.extend(gpt2.encode("user\nHello!"));
    expected.push(50258);
    expected.extend(gpt2.encode("\n"));
    expected.push(50257);
    expected.extend(gpt2.encode("assistant\n"));
    assert_eq!(ids, expected);
    assert_eq!(
        chat::stop_ids(&template, &loaded, Some(dir.path())),
        vec![50256, 50258]
    );
    // A vocabulary without spare rows cannot take them.
    let small = tempfile::tempdir().unwrap();
    arcane_model(small.path(), 50257);
    let err = chat::enable_chatml(small.path()).unwrap_err().to_string();
    assert!(err.contains("50259") && err.contains("50304"), "{err}");
}

#[test]
fn a_saved_tokenizer_keeps_its_config_and_template() {
    let tokenizer =
        ModelTokenizer::from_file(&family_dir("llama3").join("tokenizer.json")).unwrap();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(tokenizer.save_into(out.path()).unwrap(), "tokenizer.json");
    for file in ["tokenizer_config.json", "chat_template.jinja"] {
        assert_eq!(
            std::fs::read(out.path().join(file)).unwrap(),
            std::fs::read(family_dir("llama3").join(file)).unwrap(),
            "{file}"
        );
    }
    let template = ChatTemplate::from_dir(out.path()).unwrap().unwrap();
    assert_eq!(
        template.special_tokens(),
        template_of("llama3").special_tokens()
    );
}

/// Every family's template with random cuts and Jinja fragments spliced in, rendered against
/// random conversations: an error or a text, never a panic.
#[test]
fn mangled_templates_and_conversations_fail_cleanly() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const PIECES: [&str; 12] = [
        "{%",
        "%}",
        "{{",
        "}}",
        "{% endfor %}",
        "{% if",
        "raise_exception(",
        "| tojson(indent=",
        "messages[",
        "loop.",
        "'",
        "\"",
    ];
    let r = reference();
    let mut rng = StdRng::seed_from_u64(7);
    let families: Vec<String> = r["families"].as_object().unwrap().keys().cloned().collect();
    let mut rendered = 0;
    for case in 0..400 {
        let family = &families[case % families.len()];
        let template = template_of(family);
        let mut source = template
            .source(&RenderOptions::default())
            .unwrap()
            .to_string();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=source.len());
            let at = (0..=at)
                .rev()
                .find(|&i| source.is_char_boundary(i))
                .unwrap();
            if rng.random_bool(0.5) {
                let end = (at + rng.random_range(1..20)).min(source.len());
                let end = (end..=source.len())
                    .find(|&i| source.is_char_boundary(i))
                    .unwrap();
                source.replace_range(at..end, "");
            } else {
                source.insert_str(at, PIECES[rng.random_range(0..PIECES.len())]);
            }
        }
        let mangled = ChatTemplate::new(source, "mangled")
            .with_special_tokens(template.special_tokens().to_vec());
        let roles = ["user", "assistant", "system", "tool", ""];
        let messages: Vec<Message> = (0..rng.random_range(1..5))
            .map(|i| Message::new(roles[rng.random_range(0..roles.len())], format!("m{i} ü")))
            .collect();
        let options = RenderOptions {
            add_generation_prompt: rng.random_bool(0.5),
            ..RenderOptions::default()
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mangled.render(&Conversation::from_messages(&messages), &options)
        }));
        match result {
            Ok(Ok(_)) => rendered += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => panic!("case {case} ({family}) panicked"),
        }
    }
    assert!(rendered > 20, "only {rendered} mangled templates rendered");
}

#[test]
fn continuing_a_message_refuses_what_transformers_refuses() {
    let conversation = Conversation::from_messages(&[
        Message::new("user", "hi"),
        Message::new("assistant", "It is"),
    ]);
    let both = RenderOptions {
        continue_final_message: true,
        add_generation_prompt: true,
        ..RenderOptions::default()
    };
    let err = template_of("chatml")
        .render(&conversation, &both)
        .unwrap_err();
    assert!(err.to_string().contains("exclude each other"), "{err}");
    let blind = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}{% endfor %}",
        "roles only",
    );
    let only = RenderOptions {
        continue_final_message: true,
        ..RenderOptions::default()
    };
    let err = blind.render(&conversation, &only).unwrap_err();
    assert!(err.to_string().contains("\"content\""), "{err}");
    let dropping = ChatTemplate::new(
        "{% for m in messages %}{{ m.content[:2] }}{% endfor %}",
        "cuts content",
    );
    let err = dropping.render(&conversation, &only).unwrap_err();
    assert!(err.to_string().contains("does not show it"), "{err}");
}

/// The Llama fixture model with its context widened to 256 (RoPE: the first 64 positions are
/// unchanged; transformers' model has no such limit).
fn wide_llama() -> (tempfile::TempDir, arcane::Gpt<common::TestBackend>) {
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("llama").join(file), dir.path().join(file)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama/config.json")).unwrap())
            .unwrap();
    config["max_position_embeddings"] = 256.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let model = arcane::load_model::<common::TestBackend>(dir.path(), &Default::default()).unwrap();
    (dir, model)
}

#[test]
fn a_session_reuses_its_cache_and_replies_as_a_fresh_run() {
    use arcane::generation::{GenerateConfig, SamplingConfig};
    use arcane::shapes::FixedShapes;
    let cli = &reference()["cli"];
    let (_dir, model) = wide_llama();
    // Exact shapes (CPU) and bucketed ones (GPUs: a padded prefill after a filled cache).
    for shapes in [FixedShapes::EXACT, FixedShapes::BUCKETED] {
        let config = GenerateConfig {
            max_new_tokens: cli["max_new_tokens"].as_u64().unwrap() as usize,
            sampling: SamplingConfig::greedy(),
            stop_tokens: vec![2],
            vocab_limit: Some(512),
            shapes,
        };
        let mut session = chat::ChatSession::new(&model);
        let first = session
            .reply(&model, &ids(&cli["prompt_ids"]), &config, |_| {})
            .unwrap();
        assert_eq!(first.generation.ids, ids(&cli["reply_ids"]), "{shapes:?}");
        assert_eq!(first.reused, 0);
        let second_prompt = ids(&cli["second_prompt_ids"]);
        let second = session
            .reply(&model, &second_prompt, &config, |_| {})
            .unwrap();
        assert_eq!(
            second.generation.ids,
            ids(&cli["second_reply_ids"]),
            "{shapes:?}"
        );
        assert!(second.reused >= ids(&cli["prompt_ids"]).len(), "{second:?}");
        assert_eq!(second.reused + second.computed, second_prompt.len());
        // The same prompt again: everything but its last token comes from the cache.
        let again = session
            .reply(&model, &second_prompt, &config, |_| {})
            .unwrap();
        assert_eq!(again.generation.ids, second.generation.ids);
        assert_eq!(again.computed, 1);
        session.reset();
        assert_eq!(session.cached_len(), 0);
    }
}

#[test]
fn a_gpt2_models_own_template_sees_gpt2s_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    arcane_model(dir.path(), 50304);
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
    )
    .unwrap();
    let tokenizer = arcane::load_tokenizer(dir.path()).unwrap();
    let template = chat::model_template(dir.path(), &tokenizer)
        .unwrap()
        .unwrap();
    let one = Conversation::from_messages(&[Message::new("user", "hi")]);
    assert_eq!(
        template.render(&one, &RenderOptions::default()).unwrap(),
        "<|endoftext|>hi<|endoftext|>"
    );
}
