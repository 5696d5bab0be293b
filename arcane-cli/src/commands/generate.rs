//! `arcane-cli generate`: continue a prompt, streaming text as it is produced.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use arcane::generation::{eos_ids, generate, GenerateConfig};
use arcane::tokenizer::StreamDecoder;
use burn::prelude::*;
use serde_json::json;

use crate::backend::{self, BackendKind, Task};
use crate::cli::GenerateArgs;
use crate::model_arg::{load_model, load_tokenizer};
use crate::precision_args::InferencePrecision;

/// Parses the arguments into a generation config and runs it on the chosen backend.
pub fn run(args: GenerateArgs, backend: BackendKind) -> Result<()> {
    let config = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        sampling: args.sampling.config()?,
        shapes: backend.shapes(),
        ..GenerateConfig::default()
    };
    let precision = args.precision.resolve(backend)?;
    backend::run(
        backend,
        Generate {
            args,
            config,
            precision,
        },
    )
}

struct Generate {
    args: GenerateArgs,
    config: GenerateConfig,
    precision: InferencePrecision,
}

impl Task for Generate {
    type Output = ();

    fn run<B: Backend>(mut self, device: B::Device) -> Result<()> {
        // The model's own tokenizer, checked against its vocabulary before the weights load.
        let tokenizer = load_tokenizer(&self.args.model)?;
        let model = load_model::<B>(&self.args.model, self.args.adapter.as_deref(), &device)?;
        let model = self.precision.apply(model);
        let vocab = model.config().vocab_size;
        // A padded vocabulary (50304) must never yield an id the tokenizer cannot decode.
        self.config.vocab_limit = Some(vocab.min(tokenizer.vocab_size()));
        // Any of the model's end-of-sequence ids ends the text (Llama 3 lists three).
        let dir = crate::hub_model::model_dir(&self.args.model)?;
        self.config.stop_tokens = eos_ids(&tokenizer, Some(&dir));
        let prompt = tokenizer.encode_prompt(&self.args.prompt)?;
        model.check_tokens(&prompt)?;
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
            let mut stream = StreamDecoder::new(tokenizer.clone());
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
