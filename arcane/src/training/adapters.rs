//! The checkpoints of a fine-tune run keep no copy of the frozen base: the model part of
//! checkpoint `N` is `adapter-N.safetensors`, the adapters alone with the parameter ids that
//! the optimizer state (`optim-N.mpk`) is keyed by, so that a resumed run continues exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::ParamId;
use burn::prelude::Backend;

use super::checkpoint::{adapter_file_name, checkpoint_dir};
use crate::error::{ArcaneError, Result};
use crate::model::Gpt;

/// Metadata key of a parameter's id in an adapter checkpoint.
const ID_KEY: &str = "param-id:";

/// Writes the adapters of a fine-tune run's `model` as `adapter-STEP.safetensors`, with the
/// parameter ids that its optimizer state refers to.
pub fn write_adapter_checkpoint<B: Backend>(
    model: &Gpt<B>,
    run_dir: &Path,
    step: usize,
) -> Result<()> {
    let tensors = crate::lora::adapter_tensors(model);
    let ids = crate::weights::param_ids(model);
    let mut metadata =
        HashMap::from([("format".to_string(), "arcane-lora-checkpoint".to_string())]);
    for name in tensors.keys() {
        if let Some(id) = ids.get(name) {
            metadata.insert(format!("{ID_KEY}{name}"), id.val().to_string());
        }
    }
    let path = checkpoint_dir(run_dir).join(adapter_file_name(step));
    crate::weights::write_safetensors(&path, &tensors, metadata)
}

/// Loads the adapters of checkpoint `step` into `model` (the base with fresh adapters), with
/// their saved parameter ids, so that the restored optimizer state applies to them.
pub fn read_adapter_checkpoint<B: Backend>(
    model: Gpt<B>,
    run_dir: &Path,
    step: usize,
) -> Result<Gpt<B>> {
    let path = checkpoint_dir(run_dir).join(adapter_file_name(step));
    let metadata = crate::weights::read_safetensors_metadata(&path)?;
    let tensors = crate::weights::read_safetensors(std::slice::from_ref(&path))?;
    let expected: Vec<String> = crate::weights::param_ids(&model)
        .into_keys()
        .filter(|name| name.contains(".lora."))
        .collect();
    if let Some(missing) = expected.iter().find(|n| !tensors.contains_key(*n)) {
        return Err(ArcaneError::Tensor {
            path,
            tensor: missing.clone(),
            message: format!("missing from this adapter checkpoint; delete state-{step}.json to resume from the checkpoint before"),
        });
    }
    let mut ids = BTreeMap::new();
    for name in tensors.keys() {
        let id = metadata
            .get(&format!("{ID_KEY}{name}"))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                ArcaneError::format(
                    &path,
                    format!("has no parameter id for `{name}`; delete state-{step}.json to resume from the checkpoint before"),
                )
            })?;
        ids.insert(name.clone(), ParamId::from(id));
    }
    crate::weights::apply_subset_with_ids(model, tensors, &ids, &path)
}
