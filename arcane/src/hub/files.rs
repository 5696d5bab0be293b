//! Which files of a repository make a model Arcane can load, and whether a snapshot folder
//! holds them all.
//!
//! Required: `config.json` (or an Arcane `arcane.json`) and the weights — `model.safetensors`,
//! else the shards that `model.safetensors.index.json` lists. Optional, fetched when the
//! repository lists them: the tokenizer files, the generation config and chat templates.
//! A repository with only PyTorch pickles (`pytorch_model.bin`) is refused: unpickling runs
//! arbitrary code and Arcane reads safetensors only.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{ArcaneError, Result};

/// An Arcane model's manifest (`checkpoint::MANIFEST`; named here so that the checkpoint
/// module, which resolves Hub ids, stays the only one of the two to depend on the other).
pub const ARCANE_MANIFEST: &str = "arcane.json";
/// The sharded checkpoint's index.
pub const INDEX: &str = "model.safetensors.index.json";
/// A single-file checkpoint.
pub const SINGLE: &str = "model.safetensors";
/// Files fetched when listed, never required.
pub const OPTIONAL: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// What to fetch, in order: `first` (config and the single weights file or the index), then
/// the index's shards when `sharded`, then `optional`.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Files that must exist.
    pub first: Vec<String>,
    /// Whether the weights are sharded (the shards come from the index, once fetched).
    pub sharded: bool,
    /// Files fetched if the repository has them.
    pub optional: Vec<String>,
}

/// The plan for a repository listing `files`; `label` names it in errors.
pub fn plan(files: &[String], label: &str) -> Result<Plan> {
    let has = |name: &str| files.iter().any(|f| f == name && is_safe_path(f));
    let mut first = Vec::new();
    if has(ARCANE_MANIFEST) {
        first.push(ARCANE_MANIFEST.to_string());
    } else if has("config.json") {
        first.push("config.json".to_string());
    } else {
        return Err(ArcaneError::hub(
            label,
            format!(
                "the repository has no config.json, so it is not a transformers model \
                 (its files: {})",
                summary(files)
            ),
        ));
    }
    // The single file first, as the loader (`pretrained::load_hf`) reads it first.
    let sharded = !has(SINGLE) && has(INDEX) && !has(ARCANE_MANIFEST);
    if sharded {
        first.push(INDEX.to_string());
    } else if has(SINGLE) {
        first.push(SINGLE.to_string());
    } else {
        return Err(no_safetensors(files, label));
    }
    let optional = OPTIONAL
        .iter()
        .filter(|f| has(f))
        .map(|f| f.to_string())
        .collect();
    Ok(Plan {
        first,
        sharded,
        optional,
    })
}

/// The shard files a `model.safetensors.index.json` names, each once, in order.
pub fn shards(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| ArcaneError::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ArcaneError::format(index, format!("not valid JSON: {e}")))?;
    let map = json["weight_map"]
        .as_object()
        .ok_or_else(|| ArcaneError::format(index, "has no `weight_map` object"))?;
    let names: BTreeSet<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if let Some(bad) = names.iter().find(|n| !is_safe_path(n)) {
        return Err(ArcaneError::format(
            index,
            format!("names the shard {bad:?}, which is not a path inside the repository"),
        ));
    }
    if names.is_empty() {
        return Err(ArcaneError::format(
            index,
            "its `weight_map` names no files",
        ));
    }
    Ok(names.into_iter().collect())
}

/// The first file a snapshot folder needs and lacks, if any (for offline use).
pub fn missing(dir: &Path) -> Result<Option<String>> {
    let manifest = ARCANE_MANIFEST;
    if !dir.join(manifest).is_file() && !dir.join("config.json").is_file() {
        return Ok(Some("config.json".into()));
    }
    if dir.join(SINGLE).is_file() {
        return Ok(None);
    }
    if dir.join(INDEX).is_file() && !dir.join(manifest).is_file() {
        for shard in shards(&dir.join(INDEX))? {
            if !dir.join(&shard).is_file() {
                return Ok(Some(shard));
            }
        }
        return Ok(None);
    }
    Ok((!dir.join(SINGLE).is_file()).then(|| SINGLE.to_string()))
}

/// Whether a repository path may be joined to a folder: relative, no `..`, no `\`.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

fn no_safetensors(files: &[String], label: &str) -> ArcaneError {
    let pickles = files
        .iter()
        .any(|f| f.ends_with(".bin") || f.ends_with(".pt") || f.ends_with(".pth"));
    let message = if pickles {
        "the repository has PyTorch pickle weights (pytorch_model.bin) but no safetensors; \
         Arcane reads safetensors only (unpickling can run arbitrary code). Convert it once \
         with transformers: `AutoModelForCausalLM.from_pretrained(NAME).save_pretrained(DIR, \
         safe_serialization=True)`, then give DIR as the model"
            .to_string()
    } else {
        format!(
            "the repository has no model.safetensors or model.safetensors.index.json (its \
             files: {})",
            summary(files)
        )
    };
    ArcaneError::hub(label, message)
}

/// The first files of a listing, for messages.
fn summary(files: &[String]) -> String {
    match files.len() {
        0 => "none".into(),
        n if n <= 8 => files.join(", "),
        n => format!("{}, ... ({n} in all)", files[..8].join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans_single_sharded_and_refuses_pickles() {
        let single = plan(
            &names(&[
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "README.md",
            ]),
            "o/n",
        )
        .unwrap();
        assert_eq!(single.first, names(&["config.json", "model.safetensors"]));
        assert!(!single.sharded);
        assert_eq!(single.optional, names(&["tokenizer.json"]));
        let sharded = plan(
            &names(&["config.json", INDEX, "model-00001-of-00002.safetensors"]),
            "o/n",
        )
        .unwrap();
        assert_eq!(sharded.first, names(&["config.json", INDEX]));
        assert!(sharded.sharded);
        let err = plan(&names(&["config.json", "pytorch_model.bin"]), "o/n").unwrap_err();
        assert!(err.to_string().contains("safe_serialization=True"), "{err}");
        assert!(plan(&names(&["model.safetensors"]), "o/n").is_err());
    }

    #[test]
    fn safe_paths() {
        assert!(is_safe_path("a/b.safetensors"));
        for bad in ["", "/abs", "../x", "a/../b", "a//b", "a\\b"] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }
}
