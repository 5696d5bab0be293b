//! Hugging Face checkpoints in and out: a directory with `config.json` and `model.safetensors`
//! (or a sharded `model.safetensors.index.json`) of one of the [`HfArchitecture`]s (GPT-2,
//! Llama, Mistral, Qwen2, Qwen3, Gemma, Phi-3).

mod arch;
mod config;
mod config_json;
mod keys;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::Value;

pub use arch::{HfArchitecture, ARCHITECTURES};
pub use config::{hf_eos_ids, hf_special_ids, read_hf_config};
pub use config_json::hf_config_json;
pub use keys::{is_buffer, key_table, KeyMap, Layout};

use crate::error::{ArcaneError, Result};
use crate::model::Gpt;
use crate::weights::{self, HostTensor, NamedTensors};

/// True if `dir` looks like a Hugging Face model directory (it has a `config.json`).
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

/// Loads a Hugging Face checkpoint directory onto `device`.
pub fn load_hf<B: Backend>(dir: &Path, device: &B::Device) -> Result<Gpt<B>> {
    let (arch, config) = read_hf_config(&dir.join("config.json"))?;
    let files = safetensors_files(dir)?;
    let source = files.first().cloned().unwrap_or_else(|| dir.to_path_buf());
    let mut hf = weights::read_safetensors(&files)?;
    if arch == HfArchitecture::Gpt2 {
        // save_pretrained writes `transformer.h.0...`; OpenAI's original files have no prefix.
        hf = hf
            .into_iter()
            .map(|(k, t)| {
                (
                    k.strip_prefix("transformer.")
                        .map(str::to_string)
                        .unwrap_or(k),
                    t,
                )
            })
            .collect();
    }
    let mut named = NamedTensors::new();
    for row in key_table(arch, &config) {
        let tensor = hf.remove(&row.hf).ok_or_else(|| ArcaneError::Tensor {
            path: source.clone(),
            tensor: row.hf.clone(),
            message: format!(
                "missing (expected shape {:?} for a {} with this config.json)",
                row.hf_shape,
                arch.class_name()
            ),
        })?;
        if tensor.shape != row.hf_shape {
            return Err(ArcaneError::Tensor {
                path: source.clone(),
                tensor: row.hf,
                message: format!(
                    "has shape {:?}, but config.json implies {:?}",
                    tensor.shape, row.hf_shape
                ),
            });
        }
        for (path, t) in row.arcane.iter().zip(to_arcane(&row, tensor)) {
            named.insert(path.clone(), t);
        }
    }
    let tied_head = config.tie_embeddings.then_some("lm_head.weight");
    if let Some(extra) = hf
        .keys()
        .find(|k| !is_buffer(k) && Some(k.as_str()) != tied_head)
    {
        return Err(ArcaneError::Tensor {
            path: source,
            tensor: extra.clone(),
            message: format!(
                "not part of a {} with this config.json; the file and config do not match",
                arch.class_name()
            ),
        });
    }
    weights::apply(config.init(device)?, named, &source)
}

/// Saves `model` as a Hugging Face checkpoint directory (`config.json` + `model.safetensors`,
/// f32) that transformers loads as the returned architecture. Fails for configs that neither
/// GPT-2 nor Llama can express (save an Arcane checkpoint instead).
pub fn save_hf<B: Backend>(model: &Gpt<B>, dir: &Path) -> Result<HfArchitecture> {
    crate::lora::refuse_adapters(model)?;
    let config = model.config();
    let arch = HfArchitecture::for_config(config).ok_or_else(|| {
        ArcaneError::InvalidConfig(
            "this architecture has no Hugging Face equivalent (GPT-2 needs learned positions, \
             LayerNorm with bias, GELU and biases; Llama, Mistral, Qwen2, Qwen3 and Phi-3 need \
             RoPE, RMSNorm and SwiGLU; Gemma RoPE, (1 + w) RMSNorm, GeGLU and scaled \
             embeddings); save it in the Arcane format instead"
                .into(),
        )
    })?;
    let mut named = weights::collect(model);
    let mut hf = NamedTensors::new();
    for row in key_table(arch, config) {
        let parts: Vec<HostTensor> = row
            .arcane
            .iter()
            .map(|p| {
                named
                    .remove(p)
                    .expect("the key table covers the model's parameters")
            })
            .collect();
        let key = match arch {
            HfArchitecture::Gpt2 if row.hf != "lm_head.weight" => format!("transformer.{}", row.hf),
            _ => row.hf.clone(),
        };
        hf.insert(key, to_hf(&row, parts));
    }
    std::fs::create_dir_all(dir).map_err(|e| ArcaneError::io(dir, e))?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    weights::write_safetensors(&dir.join("model.safetensors"), &hf, metadata)?;
    let json = serde_json::to_string_pretty(&hf_config_json(arch, config)).expect("JSON value");
    crate::io::write_atomic(&dir.join("config.json"), json.as_bytes())?;
    Ok(arch)
}

/// Hugging Face layout to Arcane layout, one tensor per Arcane path of the row.
fn to_arcane(row: &KeyMap, tensor: HostTensor) -> Vec<HostTensor> {
    match row.layout {
        Layout::Same => vec![tensor],
        Layout::Transpose => vec![tensor.transpose()],
        Layout::SplitLast => split_last(&tensor, &row.split),
        Layout::TransposeSplit => split_last(&tensor.transpose(), &row.split),
    }
}

/// Splits the last dimension of `tensor` into consecutive parts of `widths`.
fn split_last(tensor: &HostTensor, widths: &[usize]) -> Vec<HostTensor> {
    let last = tensor.shape.last().copied().unwrap_or(1);
    let rows = tensor.values.len() / last.max(1);
    let mut begin = 0;
    widths
        .iter()
        .map(|&width| {
            let mut values = Vec::with_capacity(rows * width);
            for r in 0..rows {
                let at = r * last + begin;
                values.extend_from_slice(&tensor.values[at..at + width]);
            }
            begin += width;
            let mut shape = tensor.shape.clone();
            *shape.last_mut().expect("a split tensor has a dimension") = width;
            HostTensor { shape, values }
        })
        .collect()
}

/// Arcane layout to Hugging Face layout (the inverse of [`to_arcane`]).
fn to_hf(row: &KeyMap, mut parts: Vec<HostTensor>) -> HostTensor {
    match row.layout {
        Layout::Same => parts.remove(0),
        Layout::Transpose => parts[0].transpose(),
        Layout::SplitLast => HostTensor::concat_last(&parts),
        Layout::TransposeSplit => HostTensor::concat_last(&parts).transpose(),
    }
}

/// The safetensors file(s) of a Hugging Face directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ArcaneError::io(&index, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ArcaneError::format(&index, format!("not valid JSON: {e}")))?;
        let map = value
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ArcaneError::format(&index, "has no `weight_map` object"))?;
        let mut files = Vec::with_capacity(map.len());
        for name in map.values() {
            let name = name.as_str().unwrap_or_default();
            // Only files of this folder: no absolute paths, no `..`.
            if Path::new(name).file_name().is_none_or(|f| f != name) {
                return Err(ArcaneError::format(
                    &index,
                    format!("`weight_map` names {name:?}, which is not a file name in this folder"),
                ));
            }
            files.push(dir.join(name));
        }
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(ArcaneError::format(
                &index,
                "its `weight_map` names no files; the index is incomplete, download it again",
            ));
        }
        return Ok(files);
    }
    let hint = if dir.join("pytorch_model.bin").is_file() {
        "it has pytorch_model.bin, which Arcane does not read; convert it with \
         `model.save_pretrained(dir, safe_serialization=True)` in transformers"
    } else {
        "expected model.safetensors or model.safetensors.index.json"
    };
    Err(ArcaneError::format(
        dir,
        format!("no safetensors weights: {hint}"),
    ))
}
