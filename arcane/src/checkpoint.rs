//! The Arcane model format and the one entry point that loads any supported model directory.
//!
//! An Arcane model directory holds `arcane.json` (a small manifest with a format name and
//! version, the model config and the tokenizer) and `model.safetensors` (f32 tensors named by
//! their path in the module tree). Both are written atomically, the manifest last, so a
//! directory with a manifest always has complete weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};
use crate::io::Versioned;
use crate::model::{Gpt, ModelConfig};
use crate::pretrained;
use crate::weights;

/// Name of the manifest file of an Arcane model directory.
pub const MANIFEST: &str = "arcane.json";
/// Name of the weights file of an Arcane model directory.
pub const WEIGHTS: &str = "model.safetensors";
/// The `format` field of every Arcane manifest.
pub const FORMAT: &str = "arcane-model";
/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;
/// Format and version of `arcane.json`.
pub const MODEL_MANIFEST: Versioned = Versioned {
    format: FORMAT,
    version: VERSION,
    what: "Arcane model manifest",
    remedy: "save the model again",
};

/// The contents of `arcane.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`]; identifies the file.
    pub format: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The architecture.
    pub config: ModelConfig,
    /// The tokenizer the model was trained with (`gpt2`: tiktoken's `r50k_base`).
    pub tokenizer: String,
}

/// Saves `model` as an Arcane model directory (created if needed). A model carrying LoRA
/// adapters is refused: save the adapters alone ([`crate::lora::save_adapter`]) or merge them
/// first ([`crate::lora::merge_and_unload`]).
pub fn save_model<B: Backend>(model: &Gpt<B>, dir: &Path) -> Result<()> {
    crate::lora::refuse_adapters(model)?;
    std::fs::create_dir_all(dir).map_err(|e| ArcaneError::io(dir, e))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), VERSION.to_string()),
    ]);
    weights::write_safetensors(&dir.join(WEIGHTS), &weights::collect(model), metadata)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        config: model.config().clone(),
        tokenizer: "gpt2".into(),
    };
    MODEL_MANIFEST.write(&dir.join(MANIFEST), &manifest)
}

/// Reads and checks the manifest of an Arcane model directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let manifest: Manifest = MODEL_MANIFEST.read(&path)?;
    manifest
        .config
        .validate()
        .map_err(|e| ArcaneError::format(&path, e.to_string()))?;
    Ok(manifest)
}

/// The kinds of model directory [`load_model`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// `arcane.json` + `model.safetensors`.
    Arcane,
    /// A Hugging Face `config.json` + safetensors directory.
    HuggingFace,
}

/// Tells which kind of model directory `dir` is, or why it is none.
pub fn detect(dir: &Path) -> Result<ModelSource> {
    if !dir.exists() {
        return Err(ArcaneError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory"),
        ));
    }
    if dir.join(MANIFEST).is_file() {
        Ok(ModelSource::Arcane)
    } else if pretrained::is_hf_dir(dir) {
        Ok(ModelSource::HuggingFace)
    } else {
        Err(ArcaneError::format(
            dir,
            "not a model directory: expected an Arcane checkpoint (arcane.json + model.safetensors) \
             or a Hugging Face directory (config.json + model.safetensors)",
        ))
    }
}

/// Loads an Arcane or Hugging Face model directory onto `device`.
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device) -> Result<Gpt<B>> {
    match detect(dir)? {
        ModelSource::HuggingFace => pretrained::load_hf(dir, device),
        ModelSource::Arcane => {
            let manifest = read_manifest(dir)?;
            let path: PathBuf = dir.join(WEIGHTS);
            let tensors = weights::read_safetensors(std::slice::from_ref(&path))?;
            weights::apply(manifest.config.init(device)?, tensors, &path)
        }
    }
}

/// Reads only the config of an Arcane or Hugging Face model directory.
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    match detect(dir)? {
        ModelSource::Arcane => Ok(read_manifest(dir)?.config),
        ModelSource::HuggingFace => Ok(pretrained::read_hf_config(&dir.join("config.json"))?.1),
    }
}
