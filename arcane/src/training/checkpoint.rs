//! Training checkpoints: model, optimizer and schedule through burn-train's
//! `LearningCheckpointer`, plus a state file with the step, data position and the whole
//! training config. Every file is written to a temporary name and renamed, and the state file,
//! written last, marks a checkpoint as complete: a crash at any moment leaves the previous
//! checkpoint usable and never a half-written one that looks complete.
//!
//! Layout of `RUN_DIR/checkpoint/` for step `N`: `model-N.mpk`, `optim-N.mpk`,
//! `scheduler-N.mpk` (Burn's named MessagePack, full precision) and `state-N.json`. A
//! fine-tune run keeps no copy of its frozen base: `adapter-N.safetensors` (the adapters, with
//! the parameter ids the optimizer state is keyed by) replaces `model-N.mpk`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use burn::prelude::Backend;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Record};
use burn::train::checkpoint::{
    Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use serde::{Deserialize, Serialize};

use super::config::TrainingConfig;
use crate::data::DataPosition;
use crate::error::{ArcaneError, Result};
use crate::io::Versioned;
use crate::model::Gpt;

/// The recorder of every checkpoint file.
pub type CheckpointRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The `format` of a state file.
pub const STATE_FORMAT: &str = "arcane-train-state";
/// Format and version of `state-N.json` (version 2 records the whole config and the data's
/// size; version 1 files are still read).
pub const STATE_FILE: Versioned = Versioned {
    format: STATE_FORMAT,
    version: 2,
    what: "Arcane training state",
    remedy: "delete it to resume from the checkpoint before",
};
/// Version 1 of `state-N.json`: no config, no data size.
const STATE_FILE_V1: Versioned = Versioned {
    version: 1,
    ..STATE_FILE
};

/// `state-N.json`: where the run was when checkpoint `N` was taken, and what run it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Always [`STATE_FORMAT`].
    pub format: String,
    /// Format version (2; 1 in older runs).
    pub version: u32,
    /// Optimizer steps completed.
    pub step: usize,
    /// Tokens trained on.
    pub tokens: u64,
    /// Position in the training data.
    pub data: DataPosition,
    /// The seed of data order and dropout (the RNG state is a function of seed and step).
    pub seed: u64,
    /// Fingerprint of the model config, to refuse a checkpoint of another architecture.
    pub model_fingerprint: String,
    /// Training seconds so far.
    pub elapsed_s: f64,
    /// The whole training config of the run (version 2; `None` in version 1 files), so that a
    /// resume with another model, optimizer, schedule, batch or seed is refused.
    #[serde(default)]
    pub config: Option<TrainingConfig>,
    /// Tokens in the training and validation splits (version 2), so that a resume on other
    /// data is refused.
    #[serde(default)]
    pub data_tokens: Option<DataTokens>,
}

/// The size of a run's data, as recorded in its checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTokens {
    /// Tokens in the training split.
    pub train: u64,
    /// Tokens in the validation split.
    pub val: u64,
}

/// A stable fingerprint of the model architecture (its JSON).
pub fn fingerprint(config: &TrainingConfig) -> String {
    serde_json::to_string(&config.model).expect("config serializes")
}

/// Tracks which saves the background checkpointer threads have finished.
#[derive(Default)]
pub struct SaveTracker {
    done: Mutex<HashMap<String, std::result::Result<usize, String>>>,
    changed: Condvar,
}

impl SaveTracker {
    pub(crate) fn report(&self, name: &str, result: std::result::Result<usize, String>) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), result);
        self.changed.notify_all();
    }

    /// Blocks until every file in `names` reports step `step`, or one reports an error.
    pub fn wait(&self, names: &[&str], step: usize) -> Result<()> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            for name in names {
                if let Some(Err(e)) = done.get(*name) {
                    return Err(ArcaneError::InvalidInput(format!(
                        "writing the {name} checkpoint failed: {e}"
                    )));
                }
            }
            if names
                .iter()
                .all(|n| matches!(done.get(*n), Some(Ok(s)) if *s == step))
            {
                return Ok(());
            }
            done = self.changed.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A burn-train [`Checkpointer`] that writes `NAME-STEP.mpk` through a temporary file and a
/// rename, and reports completion to a [`SaveTracker`].
pub struct AtomicCheckpointer {
    dir: PathBuf,
    name: String,
    recorder: CheckpointRecorder,
    tracker: Arc<SaveTracker>,
}

impl AtomicCheckpointer {
    /// A checkpointer for files `dir/name-STEP.mpk`.
    pub fn new(dir: &Path, name: &str, tracker: Arc<SaveTracker>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name: name.into(),
            recorder: CheckpointRecorder::new(),
            tracker,
        }
    }

    /// The file of `step` (with its extension).
    pub fn file(&self, step: usize) -> PathBuf {
        self.dir.join(format!("{}-{step}.mpk", self.name))
    }

    fn save_inner<R: Record<B>, B: Backend>(
        &self,
        step: usize,
        record: R,
    ) -> std::result::Result<(), CheckpointerError> {
        std::fs::create_dir_all(&self.dir).map_err(CheckpointerError::IOError)?;
        // The recorder sets the extension ".mpk" on this stem, which must have no other dot.
        let stem = self
            .dir
            .join(crate::io::temporary_name(&format!("{}-{step}", self.name)));
        let written = stem.with_extension("mpk");
        burn::record::Recorder::<B>::record(&self.recorder, record, stem)
            .map_err(CheckpointerError::RecorderError)?;
        // Durable before it becomes visible under its real name, and the new name durable too.
        std::fs::File::open(&written)
            .and_then(|f| f.sync_all())
            .map_err(CheckpointerError::IOError)?;
        crate::io::crash_point(|| format!("before-rename:{}-{step}.mpk", self.name));
        crate::io::rename_durable(&written, &self.file(step))
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))
    }
}

impl<R: Record<B>, B: Backend> Checkpointer<R, B> for AtomicCheckpointer {
    fn save(&self, step: usize, record: R) -> std::result::Result<(), CheckpointerError> {
        let result = self.save_inner::<R, B>(step, record);
        self.tracker.report(
            &self.name,
            result.as_ref().map(|_| step).map_err(|e| e.to_string()),
        );
        result
    }

    fn delete(&self, step: usize) -> std::result::Result<(), CheckpointerError> {
        match std::fs::remove_file(self.file(step)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CheckpointerError::IOError(e))
            }
            _ => Ok(()),
        }
    }

    fn restore(
        &self,
        step: usize,
        device: &B::Device,
    ) -> std::result::Result<R, CheckpointerError> {
        let stem = self.dir.join(format!("{}-{step}", self.name));
        burn::record::Recorder::<B>::load(&self.recorder, stem, device)
            .map_err(CheckpointerError::RecorderError)
    }
}

/// burn-train's checkpointing strategy for Arcane: the loop decides when to checkpoint and
/// prunes old checkpoints itself (state file first), so every call saves.
pub struct SaveEveryCall;

impl CheckpointingStrategy for SaveEveryCall {
    fn checkpointing(
        &mut self,
        _step: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

/// The checkpoint folder of a run.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

fn state_file(run_dir: &Path, step: usize) -> PathBuf {
    checkpoint_dir(run_dir).join(format!("state-{step}.json"))
}

/// Writes the state file that completes checkpoint `state.step`.
pub fn write_state(run_dir: &Path, state: &TrainState) -> Result<()> {
    STATE_FILE.write(&state_file(run_dir, state.step), state)
}

/// Steps of the complete checkpoints of a run, oldest first.
pub fn checkpoint_steps(run_dir: &Path) -> Result<Vec<usize>> {
    let dir = checkpoint_dir(run_dir);
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    let mut steps: Vec<usize> = std::fs::read_dir(&dir)
        .map_err(|e| ArcaneError::io(&dir, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("state-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    Ok(steps)
}

/// Reads and checks the state of checkpoint `step` (version 2, or 1 of older runs).
pub fn read_state(run_dir: &Path, step: usize) -> Result<TrainState> {
    let path = state_file(run_dir, step);
    let text = std::fs::read_to_string(&path).map_err(|e| ArcaneError::io(&path, e))?;
    let state: TrainState = match STATE_FILE.parse(&path, &text) {
        Ok(state) => state,
        Err(e) => STATE_FILE_V1.parse(&path, &text).map_err(|_| e)?,
    };
    if state.step != step {
        return Err(ArcaneError::format(
            &path,
            format!(
                "holds the state of step {}, not {step}; delete it",
                state.step
            ),
        ));
    }
    Ok(state)
}

/// Deletes the files of checkpoints that were never completed (a process killed while writing
/// them; they have no state file), so that they do not pile up. Returns how many.
pub fn remove_incomplete(run_dir: &Path) -> Result<usize> {
    let complete = checkpoint_steps(run_dir)?;
    let dir = checkpoint_dir(run_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let step = ["model-", "optim-", "scheduler-", "adapter-"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .and_then(|rest| {
                rest.strip_suffix(".mpk")
                    .or(rest.strip_suffix(".safetensors"))
            })
            .and_then(|n| n.parse::<usize>().ok());
        if step.is_some_and(|s| !complete.contains(&s)) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| ArcaneError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Deletes all but the newest `keep` checkpoints (state files first, so that a crash halfway
/// never leaves a state file without its weights).
pub fn prune(run_dir: &Path, keep: usize) -> Result<()> {
    let steps = checkpoint_steps(run_dir)?;
    let dir = checkpoint_dir(run_dir);
    for step in steps.iter().take(steps.len().saturating_sub(keep)) {
        let state = state_file(run_dir, *step);
        std::fs::remove_file(&state).map_err(|e| ArcaneError::io(&state, e))?;
        crate::io::crash_point(|| format!("prune:{step}"));
        let files = ["model", "optim", "scheduler"]
            .map(|name| format!("{name}-{step}.mpk"))
            .into_iter()
            .chain([adapter_file_name(*step)]);
        for name in files {
            let file = dir.join(name);
            if let Err(e) = std::fs::remove_file(&file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(ArcaneError::io(&file, e));
                }
            }
        }
    }
    Ok(())
}

fn adapter_file_name(step: usize) -> String {
    format!("adapter-{step}.safetensors")
}

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
    let mut ids = std::collections::BTreeMap::new();
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
        ids.insert(name.clone(), burn::module::ParamId::from(id));
    }
    crate::weights::apply_subset_with_ids(model, tensors, &ids, &path)
}
