//! `arcane-cli eval loss`: mean next-token loss and perplexity of a text file.

use anyhow::{Context, Result};
use arcane::eval::token_loss;
use arcane::Tokenizer;
use burn::prelude::*;
use serde_json::json;

use crate::backend::{self, BackendKind, Task};
use crate::cli::EvalLossArgs;
use crate::model_arg::load_model;
use crate::progress;

/// Reads and tokenizes the text, then scores it on the chosen backend.
pub fn run(args: EvalLossArgs, backend: BackendKind) -> Result<()> {
    let bytes =
        std::fs::read(&args.text).with_context(|| format!("reading {}", args.text.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {}); convert it first, e.g. with iconv",
            args.text.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let ids = Tokenizer::gpt2().encode(&text);
    if ids.len() < 2 {
        anyhow::bail!(
            "{} has {} GPT-2 tokens; at least 2 are needed",
            args.text.display(),
            ids.len()
        );
    }
    backend::run(backend, EvalLoss { args, ids })
}

struct EvalLoss {
    args: EvalLossArgs,
    ids: Vec<u32>,
}

impl Task for EvalLoss {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let model = load_model::<B>(&self.args.model, &device)?;
        let window = self.args.window.unwrap_or(model.config().max_seq_len);
        let bar = progress::bar((self.ids.len() - 1) as u64, "tokens");
        let report = token_loss(&model, &self.ids, window, self.args.batch, |done, _| {
            bar.set_position(done as u64)
        })
        .context("scoring the text")?;
        bar.finish_and_clear();
        if self.args.json {
            println!(
                "{}",
                json!({"loss": report.loss, "perplexity": report.perplexity, "tokens": report.tokens})
            );
        } else {
            println!(
                "loss {:.4} nats/token, perplexity {:.2}, over {} tokens (window {window})",
                report.loss, report.perplexity, report.tokens
            );
        }
        Ok(())
    }
}
