//! `arcane-cli lora merge`: fold a trained adapter into its base model and write a plain model.
//! The adapter of an SFT run on conversations passes its chat format on: the merged model
//! carries the run's tokenizer (`gpt2-chatml` when the run gave a GPT-2 base Arcane's ChatML,
//! whose template the tokenizer implies) and, where the tokenizer does not bring it, the
//! template as `chat_template.jinja`, so the next stages (`reward train`, `dpo`, `ppo`) find it.

use anyhow::{Context, Result};
use arcane::chat::ChatTemplate;
use arcane::ModelTokenizer;
use burn::prelude::*;

use crate::backend::{self, BackendKind, Task};
use crate::cli::LoraMergeArgs;
use crate::model_arg::{load_model, save_as};

/// Loads base and adapter, merges, and writes the result in the chosen format.
pub fn merge(args: LoraMergeArgs, backend: BackendKind) -> Result<()> {
    backend::run(backend, Merge(args))
}

struct Merge(LoraMergeArgs);

impl Task for Merge {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let model = load_model::<B>(&args.model, Some(&args.adapter), &device)?;
        let merged = arcane::lora::merge_and_unload(model);
        let base = crate::hub_model::model_dir(&args.model)?;
        let chat = match arcane::load_tokenizer(&base) {
            Ok(tokenizer) => arcane::training::sft_adapter_chat(&args.adapter, &tokenizer)
                .context("reading the adapter's SFT run")?,
            Err(_) => None,
        };
        save_as(
            &merged,
            &args.model,
            &args.out,
            args.format,
            chat.as_ref().map(|c| &c.0),
        )?;
        if let Some((tokenizer, template)) = &chat {
            keep_template(&args.out, tokenizer, template)?;
        }
        let out = args.out.display();
        println!(
            "merged {} into {} and wrote {out}",
            args.adapter.display(),
            args.model.display()
        );
        Ok(())
    }
}

/// Writes the SFT run's template into the merged model `out` unless the model already finds
/// that template (ChatML for `gpt2-chatml`, or a template file that came with the tokenizer).
fn keep_template(
    out: &std::path::Path,
    tokenizer: &ModelTokenizer,
    template: &ChatTemplate,
) -> Result<()> {
    let source = template.source(&Default::default())?;
    let found = arcane::chat::model_template(out, tokenizer)?;
    if found.is_some_and(|t| t.source(&Default::default()).ok() == Some(source)) {
        return Ok(());
    }
    let path = out.join(arcane::chat::TEMPLATE_JINJA);
    arcane::io::write_atomic(&path, source.as_bytes())?;
    Ok(())
}
