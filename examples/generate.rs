//! Embedding Arcane in another Burn program: load a model directory (Arcane or Hugging Face),
//! tokenize a prompt, sample a continuation with top-k and nucleus sampling, print it.
//!
//! ```text
//! cargo run --release -p arcane --example generate -- [MODEL_DIR] [PROMPT]
//! ```
//! Without arguments it uses the tiny GPT-2 test fixture, which has memorised a page of
//! Moby-Dick.

use std::path::PathBuf;

use arcane::generation::{generate, GenerateConfig, SamplingConfig};
use arcane::{load_model, load_tokenizer};
use burn::backend::Flex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2"));
    let prompt = args
        .next()
        .unwrap_or_else(|| "Call me Ishmael.".to_string());

    // Any Burn backend works; this example uses the CPU.
    let device = Default::default();
    let model = load_model::<Flex>(&dir, &device)?;
    // The model's own tokenizer: GPT-2's, or the folder's tokenizer.json.
    let tokenizer = load_tokenizer(&dir)?;
    let prompt_ids = tokenizer.encode_prompt(&prompt)?;

    let config = GenerateConfig {
        max_new_tokens: 40,
        sampling: SamplingConfig {
            temperature: 0.8,
            top_k: Some(50),
            top_p: Some(0.95),
            seed: 1,
        },
        stop_tokens: tokenizer.eos().into_iter().collect(),
        vocab_limit: Some(tokenizer.vocab_size().min(model.config().vocab_size)),
        ..GenerateConfig::default()
    };
    let out = generate(&model, &prompt_ids, &config, |_| {})?;
    println!("{prompt}{}", tokenizer.decode(&out.ids)?);
    eprintln!("({} tokens, {})", out.ids.len(), out.stop);
    Ok(())
}
