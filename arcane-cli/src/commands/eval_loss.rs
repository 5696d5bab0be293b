//! `arcane-cli eval loss`: mean next-token loss and perplexity of a text file, or of the
//! validation split of prepared data (to recompute a training run's number independently).

use anyhow::{Context, Result};
use arcane::data::TokenData;
use arcane::eval::token_loss;
use burn::prelude::*;
use serde_json::json;

use crate::backend::{self, BackendKind, Task};
use crate::cli::EvalLossArgs;
use crate::model_arg::{load_model, load_tokenizer};
use crate::precision_args::InferencePrecision;
use crate::progress;

/// Reads the tokens (text or prepared data), then scores them on the chosen backend.
pub fn run(args: EvalLossArgs, backend: BackendKind) -> Result<()> {
    let (ids, source, special_tokens) = match (&args.text, &args.data) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not UTF-8 text (invalid byte at offset {}); convert it first, e.g. with iconv",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            // As `tokenizer(text)` in transformers: with the special tokens the tokenizer adds
            // (Llama's BOS; nothing for GPT-2).
            let tokenizer = load_tokenizer(&args.model)?;
            let ids = tokenizer.encode_prompt(&text)?;
            let policy = tokenizer.special_tokens_policy().to_string();
            (ids, path.display().to_string(), policy)
        }
        (None, Some(dir)) => {
            // Any window length works for reading: the split is read as one stream.
            let data = TokenData::open(dir, "val", 1)?;
            let config =
                arcane::checkpoint::load_config(&crate::hub_model::model_dir(&args.model)?)
                    .context("cannot load the model")?;
            data.check_vocab(config.vocab_size)?;
            (
                data.tokens(args.max_tokens),
                format!("the validation split of {}", dir.display()),
                "as prepared (document separators from `prepare`)".to_string(),
            )
        }
        (None, None) => anyhow::bail!("give --text FILE or --data DIR"),
    };
    if ids.len() < 2 {
        anyhow::bail!("{source} has {} tokens; at least 2 are needed", ids.len());
    }
    let precision = args.precision.resolve(backend)?;
    backend::run(
        backend,
        EvalLoss {
            precision,
            args,
            ids,
            special_tokens,
            shapes: backend.shapes(),
        },
    )
}

struct EvalLoss {
    precision: InferencePrecision,
    shapes: arcane::shapes::FixedShapes,
    args: EvalLossArgs,
    ids: Vec<u32>,
    /// Which special tokens the scored ids got, for the report.
    special_tokens: String,
}

impl Task for EvalLoss {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let model = load_model::<B>(&self.args.model, self.args.adapter.as_deref(), &device)?;
        let model = self.precision.apply(model);
        let window = self.args.window.unwrap_or(model.config().max_seq_len);
        let bar = progress::bar((self.ids.len() - 1) as u64, "tokens");
        let report = token_loss(
            &model,
            &self.ids,
            window,
            self.args.batch,
            self.shapes,
            |done, _| bar.set_position(done as u64),
        )
        .context("scoring the text")?;
        bar.finish_and_clear();
        if self.args.json {
            println!(
                "{}",
                json!({"loss": report.loss, "perplexity": report.perplexity, "tokens": report.tokens,
                       "special_tokens": self.special_tokens})
            );
        } else {
            println!(
                "loss {:.4} nats/token, perplexity {:.2}, over {} tokens (window {window}; special tokens: {})",
                report.loss, report.perplexity, report.tokens, self.special_tokens
            );
        }
        Ok(())
    }
}
