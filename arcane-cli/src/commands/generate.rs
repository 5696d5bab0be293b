//! `arcane-cli generate`: continue a prompt, streaming text as it is produced.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use arcane::generation::{generate, GenerateConfig, SamplingConfig};
use arcane::tokenizer::StreamDecoder;
use arcane::Tokenizer;
use burn::prelude::*;
use serde_json::json;

use crate::backend::{self, BackendKind, Task};
use crate::cli::GenerateArgs;
use crate::model_arg::load_model;

/// Parses the arguments into a generation config and runs it on the chosen backend.
pub fn run(args: GenerateArgs, backend: BackendKind) -> Result<()> {
    let config = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        shapes: backend.shapes(),
        ..GenerateConfig::default()
    };
    config.sampling.validate()?;
    backend::run(backend, Generate { args, config })
}

struct Generate {
    args: GenerateArgs,
    config: GenerateConfig,
}

impl Task for Generate {
    type Output = ();

    fn run<B: Backend>(mut self, device: B::Device) -> Result<()> {
        let model = load_model::<B>(&self.args.model, self.args.adapter.as_deref(), &device)?;
        let vocab = model.config().vocab_size;
        // A padded vocabulary (50304) must never yield an id the tokenizer cannot decode.
        self.config.vocab_limit = Some(vocab.min(Tokenizer::VOCAB_SIZE));
        let tokenizer = Tokenizer::gpt2();
        let prompt = tokenizer.encode(&self.args.prompt);
        model.check_tokens(&prompt).with_context(|| {
            format!(
                "the prompt's GPT-2 tokens do not fit this model's vocabulary of {vocab}; \
                 was it trained with another tokenizer?"
            )
        })?;
        let start = Instant::now();
        let out = if self.args.json {
            let out = generate(&model, &prompt, &self.config, |_| {})?;
            let text = tokenizer.decode(&out.ids)?;
            println!(
                "{}",
                json!({"prompt_ids": prompt, "ids": out.ids, "text": text})
            );
            out
        } else {
            let mut stdout = std::io::stdout().lock();
            write!(stdout, "{}", self.args.prompt)?;
            stdout.flush()?;
            let mut stream = StreamDecoder::new(tokenizer);
            let mut write_error = None;
            let out = generate(&model, &prompt, &self.config, |id| {
                let piece = stream.push(id).unwrap_or_default();
                if let Err(e) = write!(stdout, "{piece}").and_then(|_| stdout.flush()) {
                    write_error.get_or_insert(e);
                }
            })?;
            writeln!(stdout, "{}", stream.finish())?;
            if let Some(e) = write_error {
                return Err(e.into());
            }
            out
        };
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "[stopped: {}; {} new tokens in {:.2} s, {:.1} tokens/s]",
            out.stop,
            out.ids.len(),
            seconds,
            out.ids.len() as f64 / seconds
        );
        Ok(())
    }
}
