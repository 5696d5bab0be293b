//! Supervised fine-tuning: which tokens carry loss in each of TRL's formats (exact ids on
//! hand-made examples), EOS, padding, the refusal of a template without the prefix property,
//! the masked loss against its formula, and a tiny model that learns an assistant reply
//! through the training loop while user tokens carry no loss.

mod common;

use std::path::Path;

use arcane::chat::{chatml, ChatTemplate, Conversation, Message, RenderOptions};
use arcane::sft::{read_sft_rows, SftEncoder, SftExample, SftFormat, SftRow};
use arcane::training::{
    masked_lm_loss, read_metrics, sft_batch, sft_packed_batch, train, MetricRecord, SftRecipe,
    SftSet, TrainOptions,
};
use arcane::{load_tokenizer, ModelConfig, ModelTokenizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use common::*;

const IM_START: u32 = 50257;
const IM_END: u32 = 50258;
const EOT: u32 = 50256;

fn chatml_encoder(max_length: usize) -> (ModelTokenizer, SftEncoder) {
    let tokenizer = ModelTokenizer::gpt2().with_chatml().unwrap();
    let encoder = SftEncoder::new(tokenizer.clone(), Some(chatml()), max_length);
    (tokenizer, encoder)
}

fn llama_encoder() -> (ModelTokenizer, SftEncoder) {
    let tokenizer = load_tokenizer(&fixture("llama")).unwrap();
    (tokenizer.clone(), SftEncoder::new(tokenizer, None, 1024))
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
    pairs.iter().map(|(r, c)| Message::new(*r, *c)).collect()
}

#[test]
fn text_rows_carry_loss_on_every_token_and_end_with_eos() {
    let (tokenizer, encoder) = llama_encoder();
    let e = encoder
        .encode(&SftRow::Text("The sky is blue.".into()))
        .unwrap()
        .unwrap();
    // Llama's tokenizer adds <s> (1), as `tokenizer(text)` does; EOS </s> (2) is appended.
    let body = tokenizer.encode("The sky is blue.").unwrap();
    let mut expected = vec![1];
    expected.extend(&body);
    expected.push(2);
    assert_eq!(e.ids, expected);
    assert_eq!(e.loss_ids(), expected[1..].to_vec());
    assert!(!e.loss[0]);
    // GPT-2: no BOS, <|endoftext|> appended once (not twice when the text ends with it).
    let gpt2 = SftEncoder::new(ModelTokenizer::gpt2(), None, 1024);
    let e = gpt2.encode(&SftRow::Text("Hi".into())).unwrap().unwrap();
    assert_eq!(e.ids, vec![17250, EOT]);
    assert_eq!(e.loss_ids(), vec![EOT]);
}

#[test]
fn prompt_completion_rows_carry_loss_on_the_completion_and_eos() {
    let (tokenizer, encoder) = llama_encoder();
    let row = SftRow::PromptCompletion {
        prompt: "The sky is".into(),
        completion: " blue.".into(),
    };
    let e = encoder.encode(&row).unwrap().unwrap();
    let prompt = tokenizer.encode_prompt("The sky is").unwrap();
    let mut whole = tokenizer.encode_prompt("The sky is blue.").unwrap();
    whole.push(2);
    assert_eq!(e.ids, whole);
    assert!(whole.starts_with(&prompt));
    assert_eq!(e.loss_ids(), whole[prompt.len()..].to_vec());
    assert_eq!(e.loss_ids().last(), Some(&2));
    assert_eq!(e.loss_tokens(), whole.len() - prompt.len());
}

#[test]
fn conversations_carry_loss_on_assistant_turns_only() {
    let (tokenizer, encoder) = chatml_encoder(1024);
    let row = SftRow::Messages(msgs(&[
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello there"),
        ("user", "Bye"),
        ("assistant", "Ciao"),
    ]));
    let e = encoder.encode(&row).unwrap().unwrap();
    let text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                <|im_start|>assistant\nHello there<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n\
                <|im_start|>assistant\nCiao<|im_end|>\n";
    assert_eq!(e.ids, tokenizer.encode(text).unwrap());
    // Each assistant turn: its content and the template's close of the turn.
    let mut expected = tokenizer.encode("Hello there").unwrap();
    expected.extend([IM_END, 198]);
    expected.extend(tokenizer.encode("Ciao").unwrap());
    expected.extend([IM_END, 198]);
    assert_eq!(e.loss_ids(), expected);
    assert_eq!(&expected[..2], &[15496, 612]); // "Hello", " there"
                                               // The tokens before each span are the generation prompt `<|im_start|>assistant\n`.
    let first = e.loss.iter().position(|&l| l).unwrap();
    let header = [vec![IM_START], tokenizer.encode("assistant\n").unwrap()].concat();
    assert_eq!(header, vec![IM_START, 562, 10167, 198]); // "ass", "istant", "\n"
    assert_eq!(&e.ids[first - 4..first], &header[..]);
    // No conversation appends EOS (TRL appends none; the template closes the turn).
    assert!(!e.ids.contains(&EOT));
}

#[test]
fn conversational_prompt_completion_carries_loss_on_the_completion() {
    let (tokenizer, encoder) = chatml_encoder(1024);
    let row = SftRow::ChatPromptCompletion {
        prompt: msgs(&[("user", "Hi")]),
        completion: msgs(&[("assistant", "Hello")]),
    };
    let e = encoder.encode(&row).unwrap().unwrap();
    let mut expected = tokenizer.encode("Hello").unwrap();
    expected.extend([IM_END, 198]);
    assert_eq!(e.loss_ids(), expected);
    let prompt = tokenizer
        .encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert!(e.ids.starts_with(&prompt));
    assert_eq!(
        e.loss.iter().filter(|&&l| l).count(),
        e.len() - prompt.len()
    );
}

#[test]
fn truncation_keeps_the_start_and_drops_examples_without_loss() {
    let (tokenizer, _) = chatml_encoder(8);
    let prompt = tokenizer
        .encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    let n = prompt.len();
    let row = SftRow::Messages(msgs(&[("user", "Hi"), ("assistant", "Hello there")]));
    // Cut to the prompt alone: no token carries loss, the example is dropped.
    assert_eq!(chatml_encoder(n).1.encode(&row).unwrap(), None);
    // One more token: the start is kept, "Hello" is the only loss token.
    let e = chatml_encoder(n + 1).1.encode(&row).unwrap().unwrap();
    assert_eq!(e.ids[..n], prompt[..]);
    assert_eq!(e.len(), n + 1);
    assert_eq!(e.loss_ids(), tokenizer.encode("Hello").unwrap());
}

#[test]
fn a_template_without_the_prefix_property_is_refused() {
    // Brackets the last message: rendering a prefix never is the start of the longer one.
    let template = ChatTemplate::new(
        "{% for m in messages %}{% if loop.last %}[{{ m.content }}]{% else %}{{ m.content }}{% endif %}{% endfor %}",
        "brackets.jinja",
    );
    let encoder = SftEncoder::new(ModelTokenizer::gpt2(), Some(template), 1024);
    let row = SftRow::Messages(msgs(&[("user", "Hi"), ("assistant", "Hello")]));
    let err = encoder.encode(&row).unwrap_err().to_string();
    assert!(
        err.contains("brackets.jinja") && err.contains("growing prefixes"),
        "{err}"
    );
    // A template that rewrites an earlier assistant turn once more messages follow (as
    // reasoning templates drop earlier thinking): each prefix pair alone is fine, but turn 1's
    // rendering does not open the whole conversation's.
    let rewrites = ChatTemplate::new(
        "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}A:{% else %}{{ m.role }}:{{ m.content }}|{% endif %}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
        "rewrites.jinja",
    );
    let encoder2 = SftEncoder::new(ModelTokenizer::gpt2(), Some(rewrites), 1024);
    let one_turn = SftRow::Messages(msgs(&[("user", "Hi"), ("assistant", "Hello")]));
    assert!(encoder2.encode(&one_turn).unwrap().is_some());
    let two_turns = SftRow::Messages(msgs(&[
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "Bye"),
        ("assistant", "Ciao"),
    ]));
    let err = encoder2.encode(&two_turns).unwrap_err().to_string();
    assert!(
        err.contains("rewrites.jinja") && err.contains("the whole conversation"),
        "{err}"
    );
    // And with --skip-bad it is still an error: no row of such a file can be encoded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    std::fs::write(
        &path,
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
    )
    .unwrap();
    let rows = read_sft_rows(&path, true).unwrap();
    assert!(encoder.encode_rows(&rows, true, &path).is_err());
}

#[test]
fn files_name_bad_lines_and_refuse_mixed_formats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    write("{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"text\": \"c\"}\n");
    let err = read_sft_rows(&path, false).unwrap_err().to_string();
    assert!(
        err.contains("line 3") && err.contains("one format"),
        "{err}"
    );
    write("{\"messages\": [{\"role\": \"user\"}]}\nnot json\n{\"messages\": []}\n");
    let err = read_sft_rows(&path, false).unwrap_err().to_string();
    assert!(
        err.contains("line 1") && err.contains("\"content\""),
        "{err}"
    );
    let rows = read_sft_rows(&path, true).unwrap();
    assert_eq!(rows.format, SftFormat::Messages);
    assert_eq!(rows.lines, vec![3]);
    let bad: Vec<usize> = rows.bad.iter().map(|b| b.line).collect();
    assert_eq!(bad, vec![1, 2]);
}

#[test]
fn padding_carries_no_loss_and_the_masked_loss_is_the_mean_over_loss_tokens() {
    type B = TestBackend;
    let device = Default::default();
    let model = arcane::load_model::<B>(&fixture("llama"), &device).unwrap();
    let a = SftExample {
        ids: vec![1, 5, 9, 13, 2],
        loss: vec![false, false, false, true, true],
    };
    let b = SftExample {
        ids: vec![1, 7, 2],
        loss: vec![false, true, true],
    };
    let batch = sft_batch::<B>(&[&a, &b], 0, 1.0, &device);
    // T = 4 inputs per row; row 0 predicts 13 and 2 at positions 2, 3; row 1 predicts 7 and 2
    // at positions 0, 1 (4 + 0, 4 + 1); its padding at positions 2, 3 is not a loss row.
    let rows: Vec<i64> = batch
        .loss_rows
        .clone()
        .unwrap()
        .into_data()
        .convert::<i64>()
        .to_vec()
        .unwrap();
    assert_eq!(rows, vec![2, 3, 4, 5]);
    assert_eq!(batch.real_tokens, 8);
    let (loss, _, _) = masked_lm_loss(
        &model,
        batch.inputs.clone(),
        batch.targets.clone(),
        batch.loss_rows.clone().unwrap(),
        None,
    );
    let loss = loss.into_scalar().elem::<f32>();
    // The formula: mean over the four loss tokens of -log softmax(logits)[target], from the
    // full logits of each example alone.
    let nll = |ids: &[u32], at: usize| -> f32 {
        let logits = model.forward(tokens(ids, &device));
        let logp = log_softmax(logits, 2);
        let v = logp
            .slice([0..1, at - 1..at, ids[at] as usize..ids[at] as usize + 1])
            .into_scalar()
            .elem::<f32>();
        -v
    };
    let expected = (nll(&a.ids, 3) + nll(&a.ids, 4) + nll(&b.ids, 1) + nll(&b.ids, 2)) / 4.0;
    assert!((loss - expected).abs() < tol(1e-5), "{loss} vs {expected}");
}

/// A fresh tiny model with GPT-2's padded vocabulary, saved as an Arcane model.
fn tiny_base(dir: &Path) {
    let config = ModelConfig {
        vocab_size: 50304,
        max_seq_len: 32,
        d_model: 32,
        n_layers: 2,
        n_heads: 2,
        ..ModelConfig::tiny()
    };
    type B = TestBackend;
    let device = Default::default();
    B::seed(&device, 7);
    let model = arcane::weights::materialize(config.init::<B>(&device).unwrap());
    arcane::save_model(&model, dir).unwrap();
}

/// Greedy reply of `model` to `prompt`, up to `<|im_end|>`.
fn greedy<B: Backend>(model: &arcane::Gpt<B>, prompt: &[u32], max: usize) -> Vec<u32> {
    let mut ids = prompt.to_vec();
    let mut reply = Vec::new();
    for _ in 0..max {
        let logits = model.forward(tokens(&ids, &model.device()));
        let t = ids.len();
        let next = logits
            .slice([0..1, t - 1..t])
            .argmax(2)
            .into_scalar()
            .elem::<i64>() as u32;
        if next == IM_END {
            break;
        }
        reply.push(next);
        ids.push(next);
    }
    reply
}

#[test]
fn a_lora_run_learns_the_reply_on_a_frozen_base_and_chats_through_its_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let (base, run) = (dir.path().join("base"), dir.path().join("run"));
    tiny_base(&base);
    let data = dir.path().join("chat.jsonl");
    std::fs::write(
        &data,
        r#"{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello friend."}]}"#,
    )
    .unwrap();
    let lora = arcane::lora::LoraConfig {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        // The CLI's default targets (a tied head cannot take an adapter).
        targets: "q,k,v,o,mlp"
            .split(',')
            .map(|t| t.parse().unwrap())
            .collect(),
    };
    let recipe = SftRecipe {
        max_steps: Some(60),
        lr: Some(2e-2),
        micro_batch: 1,
        eval_every: Some(30),
        ..SftRecipe::new(&base, &data, Some(lora))
    };
    let (config, _) = recipe.prepare(&run).unwrap();
    let mut options = TrainOptions::<TestAutodiff>::new(&run, run.join("data"));
    options.dashboard = Some(false);
    train(config, options, Default::default()).unwrap();
    // The base has GPT-2's tokenizer and no template; the run brings both.
    let base_tokenizer = load_tokenizer(&base).unwrap();
    assert!(!base_tokenizer.has_chatml());
    let (tokenizer, template) = arcane::training::sft_adapter_chat(&run, &base_tokenizer)
        .unwrap()
        .unwrap();
    let conversation = Conversation::from_messages(&msgs(&[("user", "Hi")]));
    let options = RenderOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let prompt = tokenizer
        .encode_chat(&template.render(&conversation, &options).unwrap())
        .unwrap();
    type B = TestBackend;
    let model = arcane::load_model::<B>(&base, &Default::default()).unwrap();
    let model = arcane::lora::load_adapter(model, &run).unwrap();
    // The frozen embedding of a fresh model (std 0.02) caps the logits, so the loss stays
    // near ln(50304) while the adapters make the reply and <|im_end|> the argmax at each step.
    assert_eq!(
        tokenizer.decode(&greedy(&model, &prompt, 8)).unwrap(),
        "Hello friend."
    );
}

#[test]
fn a_tiny_model_learns_an_assistant_reply_and_user_tokens_carry_no_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (base, run) = (dir.path().join("base"), dir.path().join("run"));
    tiny_base(&base);
    let base_files = std::fs::read(base.join("model.safetensors")).unwrap();
    let data = dir.path().join("chat.jsonl");
    std::fs::write(
        &data,
        r#"{"messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris is."}]}"#,
    )
    .unwrap();
    let recipe = SftRecipe {
        max_steps: Some(40),
        lr: Some(1e-2),
        micro_batch: 1,
        eval_every: Some(20),
        ..SftRecipe::new(&base, &data, None)
    };
    let (config, prepared) = recipe.prepare(&run).unwrap();
    assert_eq!(prepared.format, Some(SftFormat::Messages));
    assert_eq!(config.sft.as_ref().unwrap().tokenizer, "gpt2-chatml");
    let device = Default::default();
    let mut options = TrainOptions::<TestAutodiff>::new(&run, run.join("data"));
    options.dashboard = Some(false);
    train(config, options, device).unwrap();

    // The run folder is a chat model of its own: ChatML tokenizer and template.
    let tokenizer = load_tokenizer(&run).unwrap();
    assert!(tokenizer.has_chatml());
    let template = arcane::chat::model_template(&run, &tokenizer)
        .unwrap()
        .unwrap();
    let conversation =
        Conversation::from_messages(&msgs(&[("user", "What is the capital of France?")]));
    let options = RenderOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let prompt = tokenizer
        .encode_chat(&template.render(&conversation, &options).unwrap())
        .unwrap();
    let model = arcane::load_model::<TestBackend>(&run, &Default::default()).unwrap();
    let reply = greedy(&model, &prompt, 8);
    assert_eq!(tokenizer.decode(&reply).unwrap(), "Paris is.");

    // TRL's metrics: the loss and accuracy are over the assistant tokens only ("Paris is."
    // <|im_end|> "\n": 5 tokens), and the first step's loss is their mean -log p under the
    // initial model, about ln(50304) for a fresh model (the user's 9 tokens are not in it).
    let records = read_metrics(&run.join("metrics.jsonl")).unwrap();
    let all: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            MetricRecord::Sft { values, .. } => Some(values.clone()),
            _ => None,
        })
        .collect();
    let (sft, eval): (Vec<_>, Vec<_>) = all.into_iter().partition(|v| v.contains_key("loss"));
    assert_eq!(sft.len(), 40);
    // Held-out figures at steps 20 and 40 under TRL's eval_ names (the one example is also
    // the held-out set): the loss is the mean over its five assistant tokens.
    assert_eq!(eval.len(), 2);
    assert_eq!(eval[1]["eval_mean_token_accuracy"], 1.0);
    assert!(eval[1]["eval_loss"] < 0.5 && eval[1]["eval_entropy"] >= 0.0);
    let last = sft.last().unwrap();
    assert_eq!(last["mean_token_accuracy"], 1.0);
    assert!(
        sft[0]["loss"] > 10.0 && sft[0]["loss"] < 11.5,
        "{}",
        sft[0]["loss"]
    );
    assert!(last["loss"] < 0.5, "{}", last["loss"]);
    let example_len = prompt.len() + 5;
    assert_eq!(sft[0]["num_tokens"], example_len as f64);
    assert_eq!(last["num_tokens"], (40 * example_len) as f64);
    for key in ["entropy", "learning_rate", "grad_norm"] {
        assert!(last[key].is_finite() && last[key] >= 0.0, "{key}");
    }
    // The base model's files are untouched.
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        base_files
    );
    let examples = std::fs::read_to_string(run.join("data/sft-train.jsonl")).unwrap();
    let example: SftExample = serde_json::from_str(examples.lines().next().unwrap()).unwrap();
    let mut loss_ids = tokenizer.encode("Paris is.").unwrap();
    loss_ids.extend([IM_END, 198]);
    assert_eq!(example.loss_ids(), loss_ids);
}

/// The logits of packed rows `[a, b]` and `[c]` (`[2, T, V]`) are those each example has alone.
fn assert_packed_equals_alone(
    name: &str,
    model: &arcane::Gpt<TestBackend>,
    logits: &Tensor<TestBackend, 3>,
    [a, b, c]: [&SftExample; 3],
) {
    let device = Default::default();
    let v = logits.dims()[2];
    let alone = |e: &SftExample| values(model.forward(tokens(&e.ids, &device)));
    let row = |r: usize, start: usize, n: usize| {
        values(logits.clone().slice([r..r + 1, start..start + n, 0..v]))
    };
    let (na, nb, nc) = (a.ids.len(), b.ids.len(), c.ids.len());
    for (got, want) in [
        (row(0, 0, na), alone(a)),
        (row(0, na, nb), alone(b)),
        (row(1, 0, nc), alone(c)),
    ] {
        let diff = got
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < tol(1e-5), "{name}: packed logits differ by {diff}");
    }
}

/// Packing on every family's switches: q/k biases (Qwen2), per-head q/k norms (Qwen3), sliding
/// windows shorter than an example (Mistral 5, Phi-3 8), Gemma's scaled embeddings and `1 + w`
/// norms, Llama 3's scaled RoPE.
#[test]
fn packing_never_crosses_examples_on_every_family() {
    type B = TestBackend;
    let device = Default::default();
    for name in ["qwen2", "qwen3", "mistral", "gemma", "phi3", "llama3"] {
        let model = arcane::load_model::<B>(&fixture(name), &device).unwrap();
        let a = example(&[1, 5, 9, 13, 21, 34, 55, 89, 144, 233], 2);
        let b = example(&[1, 7, 30], 1);
        let c = example(&[1, 8, 4, 44], 3);
        let rows = vec![vec![&a, &b], vec![&c]];
        let batch = sft_packed_batch::<B>(&rows, 0, 1.0, &device);
        let packing = batch.packing.clone().unwrap();
        let logits = model.head(model.forward_packed(batch.inputs.clone(), &packing));
        assert_packed_equals_alone(name, &model, &logits, [&a, &b, &c]);
    }
}

fn example(ids: &[u32], loss_from: usize) -> SftExample {
    SftExample {
        ids: ids.to_vec(),
        loss: (0..ids.len()).map(|i| i >= loss_from).collect(),
    }
}

/// Logits of packed rows equal those of each example alone: RoPE with grouped-query heads
/// (the Llama fixture) and learned positions (the GPT-2 fixture).
#[test]
fn packing_never_crosses_examples() {
    type B = TestBackend;
    let device = Default::default();
    for name in ["llama", "gpt2"] {
        let model = arcane::load_model::<B>(&fixture(name), &device).unwrap();
        let a = example(&[1, 5, 9, 13, 21], 2);
        let b = example(&[1, 7, 30], 1);
        let c = example(&[1, 8, 4, 44], 3);
        let rows = vec![vec![&a, &b], vec![&c]];
        let batch = sft_packed_batch::<B>(&rows, 0, 1.0, &device);
        let packing = batch.packing.clone().unwrap();
        let logits = model.head(model.forward_packed(batch.inputs.clone(), &packing)); // [2, 8, V]
        let v = logits.dims()[2];
        let _ = &batch.targets;
        let _ = v;
        assert_packed_equals_alone(name, &model, &logits, [&a, &b, &c]);
        // Positions restart per example; padding (row 1, positions 4..8) is its own example.
        let positions: Vec<i64> = packing
            .positions
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(
            positions,
            vec![0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 0, 0, 0, 0]
        );
        // Loss rows: a predicts 9, 13, 21 from positions 1..3, b predicts 7, 30 from 5, 6
        // (a's last token predicts nothing), c predicts 44 from position 2 of row 1.
        let rows: Vec<i64> = batch
            .loss_rows
            .clone()
            .unwrap()
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(rows, vec![1, 2, 3, 5, 6, 8 + 2]);
        // The packed loss is the unpacked one: the mean over the same six tokens.
        let plain = sft_batch::<B>(&[&a, &b, &c], 0, 1.0, &device);
        let (plain, _, _) = masked_lm_loss(
            &model,
            plain.inputs,
            plain.targets,
            plain.loss_rows.unwrap(),
            None,
        );
        let packed = sft_packed_batch::<B>(&[vec![&a, &b], vec![&c]], 0, 1.0, &device);
        let (packed, _, _) = masked_lm_loss(
            &model,
            packed.inputs,
            packed.targets,
            packed.loss_rows.unwrap(),
            packed.packing.as_ref(),
        );
        let (plain, packed) = (
            plain.into_scalar().elem::<f32>(),
            packed.into_scalar().elem::<f32>(),
        );
        assert!(
            (plain - packed).abs() < tol(1e-5),
            "{name}: {plain} vs {packed}"
        );
    }
}

#[test]
fn best_fit_decreasing_fills_the_fullest_row_that_fits() {
    let lens = [5, 3, 4, 2, 7];
    let set = SftSet {
        examples: lens.iter().map(|&n| example(&vec![1; n], 1)).collect(),
        pad: 0,
        bins: None,
    }
    .packed(8);
    // 7 opens row 0, 5 row 1, 4 row 2; 3 fits row 1 (free 3: the fullest that fits), 2 row 2.
    assert_eq!(set.bins.unwrap(), vec![vec![4], vec![0, 1], vec![2, 3]]);
}

/// Packing through the training loop: two conversations in one packed row, each learned.
#[test]
fn a_packed_run_learns_both_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (base, run) = (dir.path().join("base"), dir.path().join("run"));
    tiny_base(&base);
    let data = dir.path().join("chat.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"messages": [{"role": "user", "content": "Red?"}, {"role": "assistant", "content": "Apple."}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Yellow?"}, {"role": "assistant", "content": "Banana."}]}"#,
            "\n",
        ),
    )
    .unwrap();
    let eval = dir.path().join("eval.jsonl");
    std::fs::copy(&data, &eval).unwrap();
    let recipe = SftRecipe {
        max_steps: Some(80),
        lr: Some(1e-2),
        micro_batch: 1,
        eval_every: Some(40),
        packing: true,
        eval_data: Some(eval),
        ..SftRecipe::new(&base, &data, None)
    };
    let (config, prepared) = recipe.prepare(&run).unwrap();
    assert_eq!((prepared.train, prepared.val), (2, 2));
    let mut options = TrainOptions::<TestAutodiff>::new(&run, run.join("data"));
    options.dashboard = Some(false);
    train(config, options, Default::default()).unwrap();
    // One packed row of both examples a step: num_tokens grows by both lengths.
    let records = read_metrics(&run.join("metrics.jsonl")).unwrap();
    let tokens: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            MetricRecord::Sft { values, .. } => values.get("num_tokens").copied(),
            _ => None,
        })
        .collect();
    let tokenizer = load_tokenizer(&run).unwrap();
    let template = arcane::chat::model_template(&run, &tokenizer)
        .unwrap()
        .unwrap();
    let model = arcane::load_model::<TestBackend>(&run, &Default::default()).unwrap();
    let mut both = 0;
    for (question, answer) in [("Red?", "Apple."), ("Yellow?", "Banana.")] {
        let conversation = Conversation::from_messages(&msgs(&[("user", question)]));
        let options = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        let prompt = tokenizer
            .encode_chat(&template.render(&conversation, &options).unwrap())
            .unwrap();
        both += prompt.len() + tokenizer.encode(answer).unwrap().len() + 2;
        assert_eq!(
            tokenizer.decode(&greedy(&model, &prompt, 8)).unwrap(),
            answer
        );
    }
    assert_eq!(tokens[0], both as f64);
}
