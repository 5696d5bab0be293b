//! Alignment in chat format: conversational pairs and prompts rendered as TRL renders them
//! (the prompt with the generation prompt, transformers' ids; the reply up to its
//! end-of-turn token), the tokens that carry the DPO score, chat input giving the same DPO and
//! reward numbers as the same tokens given as pre-rendered text, and PPO rollouts and
//! evaluations that stop at the end-of-turn token and never cut a chat prompt.

mod common;

use arcane::align::{
    evaluate_dpo, evaluate_reward, evaluate_reward_model, parse_pair_rows, parse_prompt_rows,
    reference_logps, tokenize_pair_rows, tokenize_prompt_rows, ChatFormat, DpoConfig, FnReward,
    PairRows, PreferencePair, PromptRows, RewardEvalConfig, RewardModel, RlConfig, RlTrainer,
    RolloutConfig, SeqBatch, TokenPair,
};
use arcane::chat::{ChatTemplate, Message};
use arcane::{Gpt, ModelConfig, ModelTokenizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use common::*;
use std::path::Path;

type B = TestBackend;
type AD = TestAutodiff;

/// The `arcane_chatml` fixture: a 512-id tokenizer with `<|im_start|>` and `<|im_end|>` added,
/// no template of its own, so Arcane's ChatML.
fn chatml() -> (ModelTokenizer, ChatFormat) {
    let dir = fixture("chat/arcane_chatml");
    let tokenizer = ModelTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let chat = ChatFormat::from_model_dir(&dir, &tokenizer)
        .unwrap()
        .expect("a tokenizer with ChatML's tokens gets Arcane's ChatML");
    (tokenizer, chat)
}

/// transformers' `apply_chat_template(messages, add_generation_prompt=True, tokenize=True)`
/// for the `arcane_chatml` case `name`.
fn reference_prompt(name: &str) -> Vec<u32> {
    let cases = &reference_chat()["families"]["arcane_chatml"]["cases"];
    let case = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name && c["add_generation_prompt"] == true)
        .unwrap();
    ids(&case["ids"])
}

fn reference_chat() -> serde_json::Value {
    let path = fixture("chat/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const PAIRS: &str = r#"{"prompt": [{"role": "user", "content": "Hello!"}], "chosen": [{"role": "assistant", "content": "Call me Ishmael."}], "rejected": [{"role": "assistant", "content": "Hello world"}]}
{"chosen": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hello world"}], "rejected": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Call me Ishmael."}], "margin": 0.5}
"#;

fn chat_pairs() -> PairRows {
    parse_pair_rows(PAIRS.as_bytes(), Path::new("pairs.jsonl"), false)
        .unwrap()
        .0
}

#[test]
fn chat_pairs_are_the_rendered_prompt_and_the_reply_through_its_end_of_turn() {
    let (tokenizer, chat) = chatml();
    let im_end = tokenizer.token_to_id("<|im_end|>").unwrap();
    assert!(chat.stop_ids().contains(&im_end));
    let rows = chat_pairs();
    let PairRows::Chat(rows_chat) = &rows else {
        panic!("conversational rows")
    };
    // The implicit prompt of the second row is the message both conversations open with.
    assert_eq!(rows_chat[1].0.prompt, vec![Message::new("user", "Hello!")]);
    assert_eq!(rows_chat[1].1, Some(0.5));
    let pairs = tokenize_pair_rows(&rows, &tokenizer, Some(&chat)).unwrap();
    // The prompt: transformers' ids of the ChatML rendering with the generation prompt
    // ("<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"), 24 ids.
    let prompt = reference_prompt("hello");
    assert_eq!(prompt.len(), 24);
    assert_eq!(pairs[0].prompt, prompt);
    assert_eq!(pairs[1].prompt, prompt);
    // The reply: ChatML renders "Call me Ishmael.<|im_end|>\n" after the prompt; the reply
    // keeps what ends the turn and leaves the newline to the next turn.
    let ishmael =
        reference_chat()["families"]["arcane_chatml"]["encode"]["Call me Ishmael."].clone();
    let expected = [ids(&ishmael), vec![im_end]].concat();
    assert_eq!(pairs[0].chosen, expected);
    assert_eq!(pairs[1].rejected, expected);
    assert_eq!(*pairs[0].chosen.last().unwrap(), im_end);
    assert_eq!(pairs[1].margin, 0.5);
    // Without a template, conversations are refused with the way out.
    let err = tokenize_pair_rows(&rows, &tokenizer, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no chat template") && err.contains("arcane-cli sft"),
        "{err}"
    );
}

#[test]
fn the_dpo_score_is_the_sum_over_the_reply_tokens_only() {
    let (tokenizer, chat) = chatml();
    let pairs = tokenize_pair_rows(&chat_pairs(), &tokenizer, Some(&chat)).unwrap();
    let model = tiny_model::<B>(7);
    let bos = 0;
    let (seq, _) = pairs[0].sequences(bos, 256);
    // Which targets carry the score: exactly the reply's ids, the prompt's none.
    let batch = SeqBatch::<B>::new(std::slice::from_ref(&seq), bos, &Default::default());
    let mask = values(batch.mask.clone());
    let scored: Vec<u32> = seq.ids[1..]
        .iter()
        .zip(&mask)
        .filter(|(_, &m)| m == 1.0)
        .map(|(&id, _)| id)
        .collect();
    assert_eq!(scored, pairs[0].chosen);
    assert_eq!(
        mask.iter().filter(|&&m| m == 1.0).count(),
        pairs[0].chosen.len()
    );
    // The log-probability DPO uses, against the log-softmax of a whole-sequence forward.
    let logits = model.forward(tokens::<B>(&seq.ids, &Default::default())); // [1, T, V]
    let logp = values(log_softmax(logits, 2));
    let v = model.config().vocab_size;
    let by_hand: f64 = (seq.prompt_len - 1..seq.ids.len() - 1)
        .map(|i| f64::from(logp[i * v + seq.ids[i + 1] as usize]))
        .sum();
    let refs = reference_logps(&model, &pairs[..1], 4, false);
    assert!(
        (f64::from(refs[0].chosen) - by_hand).abs() < 1e-3,
        "{} vs {by_hand}",
        refs[0].chosen
    );
}

/// The same pairs as pre-rendered plain text: the prompt's rendering and each reply's, the
/// special tokens written out.
fn pre_rendered() -> Vec<PreferencePair> {
    let prompt = "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n";
    let (a, b) = ("Call me Ishmael.<|im_end|>", "Hello world<|im_end|>");
    vec![
        PreferencePair {
            prompt: prompt.into(),
            chosen: a.into(),
            rejected: b.into(),
            margin: None,
        },
        PreferencePair {
            prompt: prompt.into(),
            chosen: b.into(),
            rejected: a.into(),
            margin: Some(0.5),
        },
    ]
}

#[test]
fn chat_pairs_give_the_dpo_and_reward_numbers_of_the_pre_rendered_tokens() {
    let (tokenizer, chat) = chatml();
    let from_chat = tokenize_pair_rows(&chat_pairs(), &tokenizer, Some(&chat)).unwrap();
    let plain = PairRows::Text(pre_rendered());
    let from_text = tokenize_pair_rows(&plain, &tokenizer, None).unwrap();
    assert_eq!(from_chat, from_text);
    // A DPO evaluation against a reference one step away, and a reward model's ranking.
    let policy = tiny_model::<B>(3);
    let reference = tiny_model::<B>(4);
    let config = DpoConfig::default();
    let stats = |pairs: &[TokenPair]| {
        let refs = reference_logps(&reference, pairs, 4, false);
        evaluate_dpo(&policy, pairs, &refs, &config)
    };
    let (a, b) = (stats(&from_chat), stats(&from_text));
    assert_eq!(a, b);
    assert!(a.loss.is_finite() && a.loss > 0.0 && (a.loss - std::f64::consts::LN_2).abs() > 1e-6);
    let rm = RewardModel::new(tiny_model::<B>(5));
    let (r1, r2) = (
        evaluate_reward_model(&rm, &from_chat, 4, true),
        evaluate_reward_model(&rm, &from_text, 4, true),
    );
    assert_eq!(r1.loss, r2.loss);
    assert_eq!(r1.margin_mean, r2.margin_mean);
    // Two pairs with swapped replies: the margins cancel.
    assert!(r1.margin_mean.abs() < 1e-5, "{}", r1.margin_mean);
}

#[test]
fn a_template_that_rerenders_the_prompt_is_refused() {
    let (tokenizer, _) = chatml();
    // The generation prompt says "assistant" but a rendered reply opens with "model".
    let source = "{% for m in messages %}<|im_start|>{% if m.role == 'assistant' %}model{% else %}{{ m.role }}{% endif %}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let chat = ChatFormat::new(
        tokenizer.clone(),
        ChatTemplate::new(source, "odd.jinja"),
        None,
    );
    let err = tokenize_pair_rows(&chat_pairs(), &tokenizer, Some(&chat))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pair 1") && err.contains("odd.jinja") && err.contains("growing prefixes"),
        "{err}"
    );
}

#[test]
fn a_file_holds_one_format_and_chat_prompts_render_with_the_generation_prompt() {
    let mixed = format!("{PAIRS}{{\"prompt\": \"\", \"chosen\": \"a\", \"rejected\": \"b\"}}\n");
    let path = Path::new("pairs.jsonl");
    let err = parse_pair_rows(mixed.as_bytes(), path, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 3") && err.contains("one format"),
        "{err}"
    );
    let (rows, bad) = parse_pair_rows(mixed.as_bytes(), path, true).unwrap();
    assert_eq!((rows.len(), bad[0].line), (2, 3));
    let prompts =
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}\n{\"prompt\": []}\n";
    let (rows, bad) = parse_prompt_rows(prompts.as_bytes(), Path::new("p.jsonl"), true).unwrap();
    assert!(matches!(rows, PromptRows::Chat(_)) && bad[0].reason.contains("no message"));
    let (tokenizer, chat) = chatml();
    let ids = tokenize_prompt_rows(&rows, &tokenizer, Some(&chat)).unwrap();
    assert_eq!(ids, vec![reference_prompt("hello")]);
}

/// A tiny model over the fixture's vocabulary (512 ids and the added tokens), long enough for
/// chat prompts.
fn tiny_model<Bk: Backend>(seed: u64) -> Gpt<Bk> {
    let device = Default::default();
    Bk::seed(&device, seed);
    ModelConfig {
        vocab_size: 520,
        max_seq_len: 96,
        ..ModelConfig::tiny()
    }
    .init::<Bk>(&device)
    .unwrap()
}

/// Prompts of 3 to 12 tokens (longer than `max_prompt_tokens` 8).
fn long_prompts() -> Vec<Vec<u32>> {
    (0..10u32)
        .map(|i| (0..3 + i).map(|t| 10 + t).collect())
        .collect()
}

#[test]
fn ppo_chat_rollouts_stop_at_the_end_of_turn_and_keep_whole_prompts() {
    // Half the vocabulary ends a turn, so most responses stop within a few tokens.
    let stop: Vec<u32> = (0..260).collect();
    let config = RlConfig {
        iterations: 1,
        rollouts: 8,
        minibatch: 4,
        response_tokens: 6,
        normalize_reward: false,
        chat_stop: Some(stop.clone()),
        ..RlConfig::ppo()
    };
    let mut trainer = RlTrainer::new(tiny_model::<AD>(3), long_prompts(), config).unwrap();
    assert!(trainer.rollout_config().chat);
    let mut seen = Vec::new();
    let exp = {
        let mut reward = FnReward(|p: &[u32], r: &[u32]| {
            seen.push((p.to_vec(), r.to_vec()));
            r.len() as f32
        });
        trainer.step(&mut reward).unwrap().1
    };
    let mut stopped = 0;
    for (i, (prompt, read)) in seen.iter().enumerate() {
        // Whole prompts (one length per draw), never cut to max_prompt_tokens.
        assert!(long_prompts().contains(prompt));
        assert_eq!(prompt.len(), seen[0].0.len());
        let response = &exp.responses[i];
        match response.iter().position(|t| stop.contains(t)) {
            // The reward reads the reply through its end-of-turn token; the rest is masked.
            Some(end) => {
                stopped += 1;
                assert_eq!(read, &response[..=end]);
                assert_eq!(exp.valid[i], end + 1);
            }
            None => assert_eq!((read, exp.valid[i]), (response, 6)),
        }
    }
    assert!(stopped >= 6, "{stopped} of 8 responses stopped");
}

#[test]
fn chat_evaluations_batch_whole_prompts_by_length_in_file_order() {
    let model = tiny_model::<B>(9);
    let rollout = RolloutConfig::for_model(model.config(), 5, 1.0).with_chat_stop(&[300]);
    assert_eq!(rollout.valid_len(&[1, 300, 2]), 2);
    assert_eq!(rollout.reward_part(&[1, 300, 2]), &[1, 300]);
    assert_eq!(rollout.text_part(&[1, 300, 2]), &[1]);
    let prompts = long_prompts();
    let config = RewardEvalConfig {
        samples: 12,
        batch: 4,
        ..RewardEvalConfig::default()
    };
    let mut reward = FnReward(|p: &[u32], _: &[u32]| p.len() as f32);
    let eval = evaluate_reward(&model, &model, &prompts, &mut reward, &rollout, &config).unwrap();
    for (i, s) in eval.samples.iter().enumerate() {
        assert_eq!(s.prompt, prompts[i % prompts.len()]);
        assert_eq!(s.reward, s.prompt.len() as f64);
        assert!(s.kl.abs() < 1e-4);
        // A reply that ended lost its end-of-turn token and what followed it.
        assert_eq!(s.ended, s.response.len() < 5);
    }
    let ended = eval.samples.iter().filter(|s| s.ended).count();
    assert_eq!(eval.ended, ended as f64 / 12.0);
    // The same seed gives a row the same sample whatever its batch: row 10 (prompt 0) sits
    // with prompt 0's row 0 in the shortest batch, and alone a batch of one gives the same.
    let single = RewardEvalConfig { batch: 1, ..config };
    let alone = evaluate_reward(&model, &model, &prompts, &mut reward, &rollout, &single).unwrap();
    for (a, b) in eval.samples.iter().zip(&alone.samples) {
        assert_eq!(a.response, b.response);
    }
}
