//! LoRA (Hu et al. 2021, arXiv:2106.09685) on a whole model: attaching fresh adapters to the
//! projections a [`LoraConfig`] selects (the base frozen), merging them into the weights and
//! back, and adapter files (`adapter.json` + `adapter.safetensors`) that hold the adapters
//! alone. The projection with its adapter slot is [`crate::model::Linear`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};
use crate::io::Versioned;
use crate::model::{Gpt, Linear, ModelConfig};
pub use crate::model::{LoraAdapter, LoraConfig, LoraTarget};
use crate::weights::{self, NamedTensors};

/// The error for saving a model whose adapters are not merged away.
pub fn refuse_adapters<B: Backend>(model: &Gpt<B>) -> Result<()> {
    match model.lora {
        Some(_) => Err(ArcaneError::InvalidInput(
            "this model carries LoRA adapters; save them with save_adapter, or merge them into the \
             weights first (merge_and_unload / `arcane-cli lora merge`)"
                .into(),
        )),
        None => Ok(()),
    }
}

/// Applies `f` to every projection that `targets` selects.
fn map_targets<B: Backend>(
    mut model: Gpt<B>,
    targets: &[LoraTarget],
    mut f: impl FnMut(Linear<B>) -> Linear<B>,
) -> Gpt<B> {
    let has = |t| targets.contains(&t);
    for block in model.blocks.iter_mut() {
        let attn = &mut block.attn;
        for (target, proj) in [
            (LoraTarget::Q, &mut attn.q),
            (LoraTarget::K, &mut attn.k),
            (LoraTarget::V, &mut attn.v),
            (LoraTarget::O, &mut attn.o),
        ] {
            if has(target) {
                take_map(proj, &mut f);
            }
        }
        if has(LoraTarget::Mlp) {
            let mlp = &mut block.mlp;
            take_map(&mut mlp.fc, &mut f);
            take_map(&mut mlp.proj, &mut f);
            if let Some(gate) = mlp.gate.as_mut() {
                take_map(gate, &mut f);
            }
        }
    }
    if has(LoraTarget::Head) {
        if let Some(head) = model.lm_head.as_mut() {
            take_map(head, &mut f);
        }
    }
    model
}

fn take_map<B: Backend>(proj: &mut Linear<B>, f: &mut impl FnMut(Linear<B>) -> Linear<B>) {
    // A placeholder without tensors while `f` owns the projection.
    let placeholder = Linear {
        weight: proj.weight.clone(),
        bias: None,
        lora: None,
    };
    let owned = std::mem::replace(proj, placeholder);
    *proj = f(owned);
}

/// Freezes every parameter of `model` and attaches fresh adapters to the targets of `config`.
/// The result computes exactly what `model` computes until the adapters are trained.
pub fn apply_lora<B: Backend>(model: Gpt<B>, config: &LoraConfig) -> Result<Gpt<B>> {
    config.validate(model.config())?;
    if model.lora.is_some() {
        return Err(ArcaneError::InvalidInput(
            "the model already carries LoRA adapters".into(),
        ));
    }
    let device = model.device();
    let mut model = map_targets(model.no_grad(), &config.targets, |p| {
        p.with_adapter(config, &device)
    });
    model.lora = Some(config.clone());
    Ok(model)
}

/// Folds every adapter into its base weight (`W + scale·A·B`); the forward then skips them.
pub fn merge<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    map_targets(model, &LoraTarget::ALL, |p| p.set_merged(true))
}

/// Undoes [`merge`]: subtracts each adapter's update from its base weight again.
pub fn unmerge<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    map_targets(model, &LoraTarget::ALL, |p| p.set_merged(false))
}

/// Merges and drops the adapters: a plain model to save in the Arcane or Hugging Face format.
pub fn merge_and_unload<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    let mut model = map_targets(merge(model), &LoraTarget::ALL, |mut p| {
        p.lora = None;
        p
    });
    model.lora = None;
    model
}

/// The base model under the adapters: unmerges and drops every adapter, sharing the frozen
/// base tensors with `model` (no copy). The RLHF reference policy of a LoRA policy is this.
pub fn without_adapters<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    let mut model = map_targets(unmerge(model), &LoraTarget::ALL, |mut p| {
        p.lora = None;
        p
    });
    model.lora = None;
    model
}

/// (trainable, total) parameter counts.
pub fn parameter_counts<B: Backend>(model: &Gpt<B>) -> (usize, usize) {
    let adapters: usize = adapter_tensors(model)
        .values()
        .map(|t| t.values.len())
        .sum();
    let total = model.num_params();
    if model.lora.is_some() {
        (adapters, total)
    } else {
        (total, total)
    }
}

/// The adapters' tensors of `model` (`*.lora.*`), keyed by path.
pub fn adapter_tensors<B: Backend>(model: &Gpt<B>) -> NamedTensors {
    weights::collect(model)
        .into_iter()
        .filter(|(name, _)| name.contains(".lora."))
        .collect()
}

/// File names of an adapter directory.
pub const ADAPTER_MANIFEST: &str = "adapter.json";
/// Weights file of an adapter directory.
pub const ADAPTER_WEIGHTS: &str = "adapter.safetensors";
/// Format and version of `adapter.json`.
pub const ADAPTER_FORMAT: Versioned = Versioned {
    format: "arcane-lora",
    version: 1,
    what: "Arcane LoRA adapter manifest",
    remedy: "save the adapter again",
};

/// `adapter.json`: what the adapter is and which base it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterManifest {
    /// Always "arcane-lora".
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Rank, alpha, dropout, targets.
    pub lora: LoraConfig,
    /// The architecture of the base model the adapter was trained on.
    pub base_config: ModelConfig,
    /// Where the base model came from, for people (not checked).
    pub base_source: String,
}

/// Saves only the adapters of `model` (a small file) and a manifest naming the base.
pub fn save_adapter<B: Backend>(model: &Gpt<B>, dir: &Path, base_source: &str) -> Result<()> {
    let lora = model.lora.clone().ok_or_else(|| {
        ArcaneError::InvalidInput("the model has no LoRA adapters to save".into())
    })?;
    std::fs::create_dir_all(dir).map_err(|e| ArcaneError::io(dir, e))?;
    let meta = HashMap::from([("format".to_string(), "arcane-lora".to_string())]);
    weights::write_safetensors(&dir.join(ADAPTER_WEIGHTS), &adapter_tensors(model), meta)?;
    let manifest = AdapterManifest {
        format: ADAPTER_FORMAT.format.into(),
        version: ADAPTER_FORMAT.version,
        lora,
        base_config: model.config().clone(),
        base_source: base_source.into(),
    };
    ADAPTER_FORMAT.write(&dir.join(ADAPTER_MANIFEST), &manifest)
}

/// True if `dir` holds an adapter.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_MANIFEST).is_file()
}

/// Reads and checks `adapter.json`.
pub fn read_adapter_manifest(dir: &Path) -> Result<AdapterManifest> {
    ADAPTER_FORMAT.read(&dir.join(ADAPTER_MANIFEST))
}

/// Attaches the adapter saved in `dir` to `base`, restoring the fine-tuned model exactly.
/// Fails if the adapter was trained on a base of another architecture or shape.
pub fn load_adapter<B: Backend>(base: Gpt<B>, dir: &Path) -> Result<Gpt<B>> {
    let manifest = read_adapter_manifest(dir)?;
    if !manifest.base_config.same_model(base.config()) {
        return Err(ArcaneError::format(
            dir,
            format!(
                "this adapter was trained on another base model ({}); load it onto that model",
                describe_difference(&manifest.base_config, base.config())
            ),
        ));
    }
    let path = dir.join(ADAPTER_WEIGHTS);
    let tensors = weights::read_safetensors(std::slice::from_ref(&path))?;
    let model = apply_lora(base, &manifest.lora)?;
    weights::apply_subset(model, tensors, &path)
}

fn describe_difference(adapter: &ModelConfig, base: &ModelConfig) -> String {
    let a = serde_json::to_value(adapter).unwrap_or_default();
    let b = serde_json::to_value(base).unwrap_or_default();
    let (a, b): (
        BTreeMap<String, serde_json::Value>,
        BTreeMap<String, serde_json::Value>,
    ) = (
        serde_json::from_value(a).unwrap_or_default(),
        serde_json::from_value(b).unwrap_or_default(),
    );
    let diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| *k != "hf_architecture" && b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k} {v} vs {}", b.get(k).cloned().unwrap_or_default()))
        .collect();
    diffs.join(", ")
}
