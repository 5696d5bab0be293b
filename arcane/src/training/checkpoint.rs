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

    /// Writes the file of `step`; the error says which file and why, in words.
    fn save_inner<R: Record<B>, B: Backend>(
        &self,
        step: usize,
        record: R,
    ) -> std::result::Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| ArcaneError::io(&self.dir, e).to_string())?;
        // The recorder sets the extension ".mpk" on this stem, which must have no other dot.
        let stem = self
            .dir
            .join(crate::io::temporary_name(&format!("{}-{step}", self.name)));
        let written = stem.with_extension("mpk");
        burn::record::Recorder::<B>::record(&self.recorder, record, stem)
            .map_err(|e| format!("{}: {e}", written.display()))?;
        // Durable before it becomes visible under its real name, and the new name durable too.
        std::fs::File::open(&written)
            .and_then(|f| f.sync_all())
            .map_err(|e| ArcaneError::io(&written, e).to_string())?;
        crate::io::crash_point(|| format!("before-rename:{}-{step}.mpk", self.name));
        crate::io::rename_durable(&written, &self.file(step)).map_err(|e| {
            let _ = std::fs::remove_file(&written);
            e.to_string()
        })
    }
}

impl<R: Record<B>, B: Backend> Checkpointer<R, B> for AtomicCheckpointer {
    fn save(&self, step: usize, record: R) -> std::result::Result<(), CheckpointerError> {
        let result = self.save_inner::<R, B>(step, record);
        self.tracker
            .report(&self.name, result.clone().map(|_| step));
        result.map_err(CheckpointerError::Unknown)
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

/// File name of the adapters of checkpoint `step` of a fine-tune run (see `adapters.rs`).
pub(crate) fn adapter_file_name(step: usize) -> String {
    format!("adapter-{step}.safetensors")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_of_version_1_are_still_read_and_unknown_versions_refused() {
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkpoint_dir(run.path())).unwrap();
        let v1 = r#"{"format": "arcane-train-state", "version": 1, "step": 4, "tokens": 512,
            "data": {"micro_batches": 4, "windows": 8, "pass": 0, "windows_per_pass": 100},
            "seed": 7, "model_fingerprint": "{}", "elapsed_s": 1.0}"#;
        std::fs::write(state_file(run.path(), 4), v1).unwrap();
        let state = read_state(run.path(), 4).unwrap();
        assert_eq!((state.step, state.seed, state.version), (4, 7, 1));
        assert_eq!((state.config, state.data_tokens), (None, None));
        std::fs::write(
            state_file(run.path(), 4),
            v1.replace("\"version\": 1", "\"version\": 3"),
        )
        .unwrap();
        let err = read_state(run.path(), 4).unwrap_err().to_string();
        assert!(
            err.contains("version 3 is not supported") && err.contains("reads version 2"),
            "{err}"
        );
    }
}
