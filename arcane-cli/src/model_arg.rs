//! Resolving `--config PRESET|FILE` and `--model DIR|ORG/NAME[@REV]` arguments, and writing
//! models out.

use std::path::Path;

use anyhow::{bail, Context, Result};
use arcane::model::{ModelConfig, PRESETS};
use arcane::ModelTokenizer;
use burn::prelude::*;

use crate::cli::ModelFormat;
use crate::hub_model::model_dir;

/// A preset name or the path of a JSON file holding a model config (or a run config with a
/// `model` field). Returns a display name and the config.
pub fn resolve_config(arg: &str) -> Result<(String, ModelConfig)> {
    if let Some(config) = ModelConfig::preset(arg) {
        return Ok((arg.to_string(), config));
    }
    let path = Path::new(arg);
    if !path.is_file() {
        bail!(
            "{arg:?} is neither a preset ({}) nor a config file",
            PRESETS.join(", ")
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{arg} is not valid JSON"))?;
    if let Some(model) = value.get_mut("model") {
        value = model.take();
    }
    let config: ModelConfig = serde_json::from_value(value)
        .with_context(|| format!("{arg} is not a valid model config (see configs/models/)"))?;
    config.validate().with_context(|| format!("in {arg}"))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or(arg);
    Ok((name.to_string(), config))
}

/// Loads a model directory (or Hub model, see [`model_dir`]), and a LoRA adapter onto it when
/// given. The library's errors name the files, so the context only says what was being done.
pub fn load_model<B: Backend>(
    dir: &Path,
    adapter: Option<&Path>,
    device: &B::Device,
) -> Result<arcane::Gpt<B>> {
    let dir = model_dir(dir).context("cannot load the model")?;
    let model = arcane::load_model(&dir, device).context("cannot load the model")?;
    match adapter {
        None => Ok(model),
        Some(adapter) => arcane::lora::load_adapter(model, adapter)
            .context("cannot attach the LoRA adapter to the model"),
    }
}

/// The tokenizer of a model directory, checked against its vocabulary (a folder that is no
/// model is reported as such first).
pub fn load_tokenizer(dir: &Path) -> Result<ModelTokenizer> {
    let dir = model_dir(dir).context("cannot load the model")?;
    arcane::checkpoint::load_config(&dir).context("cannot load the model")?;
    arcane::load_tokenizer(&dir).context("cannot use the model's tokenizer")
}

/// Writes `model` to `out` in `format`, with `tokenizer`, else the tokenizer of the model
/// directory `source` (its `tokenizer.json` is copied along). Returns what was written, for
/// people.
pub fn save_as<B: Backend>(
    model: &arcane::Gpt<B>,
    source: &Path,
    out: &Path,
    format: ModelFormat,
    tokenizer: Option<&ModelTokenizer>,
) -> Result<String> {
    // A folder without a known tokenizer can still be converted; the copy says so.
    let tokenizer = match tokenizer {
        Some(t) => Some(t.clone()),
        None => arcane::load_tokenizer(&model_dir(source)?).ok(),
    };
    let written = match format {
        ModelFormat::Arcane => {
            arcane::checkpoint::save_model_with_tokenizer(model, out, tokenizer.as_ref())
                .with_context(|| format!("writing {}", out.display()))?;
            "an Arcane model".to_string()
        }
        ModelFormat::Hf => {
            let arch = arcane::pretrained::save_hf(model, out)
                .with_context(|| format!("writing {}", out.display()))?;
            if let Some(tokenizer @ ModelTokenizer::HuggingFace(_)) = &tokenizer {
                tokenizer.save_into(out)?;
            }
            arch.class_name().to_string()
        }
    };
    Ok(written)
}
