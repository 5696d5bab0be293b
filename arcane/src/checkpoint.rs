//! The Arcane model format and the one entry point that loads any supported model directory
//! (or Hub model, `ORG/NAME[@REVISION]`, through [`locate`]).
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
use crate::pretrained::{self, HfArchitecture};
use crate::tokenizer::{HfTokenizer, ModelTokenizer, GPT2_NAME, TOKENIZER_FILE};
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
    /// The tokenizer the model was trained with: `gpt2` (tiktoken's `r50k_base`), or the name
    /// of a Hugging Face `tokenizer.json` in the same directory.
    pub tokenizer: String,
}

/// Saves `model` as an Arcane model directory (created if needed). A model carrying LoRA
/// adapters is refused: save the adapters alone ([`crate::lora::save_adapter`]) or merge them
/// first ([`crate::lora::merge_and_unload`]).
pub fn save_model<B: Backend>(model: &Gpt<B>, dir: &Path) -> Result<()> {
    save_model_with_tokenizer(model, dir, Some(&ModelTokenizer::gpt2()))
}

/// [`save_model`] for a model with its own tokenizer (a `tokenizer.json` is copied beside
/// the weights and named in the manifest), or with none known (`None`: a Hugging Face folder
/// without `tokenizer.json`; [`load_tokenizer`] then says how to add it).
pub fn save_model_with_tokenizer<B: Backend>(
    model: &Gpt<B>,
    dir: &Path,
    tokenizer: Option<&ModelTokenizer>,
) -> Result<()> {
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
        tokenizer: match tokenizer {
            Some(tokenizer) => tokenizer.save_into(dir)?,
            None => UNKNOWN_TOKENIZER.into(),
        },
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
        return Err(ArcaneError::format(
            dir,
            "no such model directory; give an Arcane model folder (a finished run) or a Hugging Face folder",
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

/// Where the model `spec` is: `spec` itself when that path exists (a local folder always
/// wins), else, when it reads `ORG/NAME[@REVISION]`, its snapshot folder in the Hugging Face
/// cache, downloaded first if needed, with the settings of [`crate::hub::HubOptions::from_env`]
/// (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE`, ...). Anything else is
/// returned as it is, for [`detect`] to report. Use [`crate::hub::resolve`] directly for
/// other options, progress, or the resolved commit.
pub fn locate(spec: &Path) -> Result<PathBuf> {
    if spec.exists() {
        return Ok(spec.to_path_buf());
    }
    match spec.to_str() {
        Some(id) if crate::hub::looks_like_repo_id(id) => {
            let options = crate::hub::HubOptions::from_env()?;
            Ok(crate::hub::resolve(id, &options, &mut crate::hub::NoProgress)?.dir)
        }
        _ => Ok(spec.to_path_buf()),
    }
}

/// Loads an Arcane or Hugging Face model directory, or a Hub model `ORG/NAME[@REVISION]`
/// (see [`locate`]), onto `device`.
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device) -> Result<Gpt<B>> {
    let dir = &locate(dir)?;
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

/// Reads only the config of an Arcane or Hugging Face model directory (or Hub model, see
/// [`locate`]).
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    let dir = &locate(dir)?;
    match detect(dir)? {
        ModelSource::Arcane => Ok(read_manifest(dir)?.config),
        ModelSource::HuggingFace => Ok(pretrained::read_hf_config(&dir.join("config.json"))?.1),
    }
}

/// The tokenizer of a model directory, checked against the model's vocabulary: the one its
/// manifest names (Arcane), its `tokenizer.json` (Hugging Face), or GPT-2's for a Hugging Face
/// GPT-2 without one. A model of another family without its tokenizer is refused: encoding
/// text for it with GPT-2's ids would give garbage without an error. `dir` may be a Hub
/// model (see [`locate`]).
pub fn load_tokenizer(dir: &Path) -> Result<ModelTokenizer> {
    let dir = &locate(dir)?;
    let (tokenizer, vocab_size) = match detect(dir)? {
        ModelSource::Arcane => {
            let manifest = read_manifest(dir)?;
            (
                tokenizer_named(dir, &manifest.tokenizer)?,
                manifest.config.vocab_size,
            )
        }
        ModelSource::HuggingFace => {
            let config_file = dir.join("config.json");
            let (arch, config) = pretrained::read_hf_config(&config_file)?;
            let file = dir.join(TOKENIZER_FILE);
            let tokenizer = if file.is_file() {
                let (bos, eos) = pretrained::hf_special_ids(&config_file);
                ModelTokenizer::HuggingFace(
                    HfTokenizer::from_file(&file)?.with_special_ids(bos, eos),
                )
            } else if arch == HfArchitecture::Gpt2 {
                ModelTokenizer::gpt2()
            } else {
                return Err(ArcaneError::format(
                    dir,
                    format!(
                        "this {} (vocabulary of {}) has no {TOKENIZER_FILE}, and Arcane cannot \
                         tell its tokenizer; copy the model's {TOKENIZER_FILE} into this folder",
                        arch.class_name(),
                        config.vocab_size
                    ),
                ));
            };
            (tokenizer, config.vocab_size)
        }
    };
    tokenizer.check_model(vocab_size, dir)?;
    Ok(tokenizer)
}

/// How a manifest says that the model's tokenizer is not known.
pub const UNKNOWN_TOKENIZER: &str = "unknown";

/// The tokenizer a manifest names: `gpt2`, or a `.json` file in the model directory.
fn tokenizer_named(dir: &Path, name: &str) -> Result<ModelTokenizer> {
    if let Some(builtin) = ModelTokenizer::builtin(name) {
        return Ok(builtin);
    }
    if name == UNKNOWN_TOKENIZER {
        return Err(ArcaneError::format(
            dir,
            format!(
                "the model's tokenizer is not known (it was converted from a folder without \
                 {TOKENIZER_FILE}); copy the model's {TOKENIZER_FILE} into this folder and set \
                 \"tokenizer\": \"{TOKENIZER_FILE}\" in {MANIFEST}"
            ),
        ));
    }
    let plain_file = Path::new(name).file_name().is_some_and(|f| f == name);
    if plain_file && name.ends_with(".json") {
        return ModelTokenizer::from_file(&dir.join(name));
    }
    Err(ArcaneError::format(
        dir.join(MANIFEST),
        format!(
            "names the tokenizer {name:?}, which this build does not know; expected \"{GPT2_NAME}\" \
             or the name of a tokenizer.json file in the model folder"
        ),
    ))
}
