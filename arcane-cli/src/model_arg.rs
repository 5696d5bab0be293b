//! Resolving `--config PRESET|FILE` and `--model DIR` arguments.

use std::path::Path;

use anyhow::{bail, Context, Result};
use arcane::model::{ModelConfig, PRESETS};
use burn::prelude::*;

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

/// Loads a model directory, and a LoRA adapter onto it when given, with a context that names
/// them.
pub fn load_model<B: Backend>(
    dir: &Path,
    adapter: Option<&Path>,
    device: &B::Device,
) -> Result<arcane::Gpt<B>> {
    let model = arcane::load_model(dir, device)
        .with_context(|| format!("loading model {}", dir.display()))?;
    match adapter {
        None => Ok(model),
        Some(adapter) => arcane::lora::load_adapter(model, adapter).with_context(|| {
            format!(
                "loading LoRA adapter {} onto {}",
                adapter.display(),
                dir.display()
            )
        }),
    }
}
