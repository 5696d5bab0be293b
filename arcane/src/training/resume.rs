//! Resuming a run: which checkpoint to continue from, whether the run asked for is the run
//! that wrote it, and loading it.
//!
//! A checkpoint's state file records the whole training config and the size of the data.
//! Everything that decides the weights (model, seed, batch arithmetic, optimizer, schedule,
//! fine-tuning, data) must be the same on resume; a difference is refused with the fields
//! named. What only decides reporting (evaluation and checkpoint intervals, samples, HellaSwag,
//! activation checkpointing, the MFU peak) may change. The one planned change of the schedule
//! is an extension ([`TrainingConfig::extended`]): more steps at the final rate, the schedule's
//! length kept.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::Checkpointer;
use burn::train::Learner;
use serde_json::Value;

use super::checkpoint::{self, AtomicCheckpointer, DataTokens, SaveTracker, TrainState};
use super::components::ArcaneComponents;
use super::config::TrainingConfig;
use crate::error::{ArcaneError, Result};

/// Fields that may differ between a checkpoint and the run that resumes it: they decide what
/// is measured and saved, not the weights.
const REPORTING_FIELDS: [&str; 11] = [
    "eval_every",
    "eval_tokens",
    "checkpoint_every",
    "keep_checkpoints",
    "sample_prompt",
    "sample_tokens",
    "log_every",
    "activation_checkpointing",
    "peak_flops",
    "hellaswag",
    "eval_suite",
];

/// The newest complete checkpoint of `run_dir`, checked against `config` and the size of the
/// data; `None` when the run has none yet (it was stopped before its first checkpoint, and
/// starts again from step 0).
pub(crate) fn resume_point(
    run_dir: &Path,
    config: &TrainingConfig,
    data: DataTokens,
) -> Result<Option<TrainState>> {
    let Some(&step) = checkpoint::checkpoint_steps(run_dir)?.last() else {
        return Ok(None);
    };
    let state = checkpoint::read_state(run_dir, step)?;
    let refuse = |what: String| {
        ArcaneError::format(
            run_dir,
            format!(
                "cannot resume from checkpoint {step}: {what}. Resume with the run's own \
                 settings (its config.json and data), or start a new run with --out; \
                 `--extend-steps N` trains a run further"
            ),
        )
    };
    match &state.config {
        Some(saved) => {
            let changes = config_changes(saved, config);
            if !changes.is_empty() {
                return Err(refuse(format!(
                    "the training config differs in {}",
                    changes.join("; ")
                )));
            }
        }
        // Version 1 state files know the model and the seed only.
        None if state.model_fingerprint != checkpoint::fingerprint(config) => {
            return Err(refuse("it was made for another model config".into()));
        }
        None if state.seed != config.seed => {
            return Err(refuse(format!(
                "it was made with seed {}, the config says {}",
                state.seed, config.seed
            )));
        }
        None => {}
    }
    if let Some(saved) = state.data_tokens {
        if saved != data {
            return Err(refuse(format!(
                "it was made on {} training and {} validation tokens, the data given has {} and {}",
                saved.train, saved.val, data.train, data.val
            )));
        }
    }
    Ok(Some(state))
}

/// The differences between a checkpoint's config and `now` that change the weights, each as
/// "field: value at the checkpoint -> value now" (empty: the same run).
pub fn config_changes(saved: &TrainingConfig, now: &TrainingConfig) -> Vec<String> {
    let mut changes = Vec::new();
    diff("", &defining(saved), &defining(now), &mut changes);
    let (before, after) = (saved.schedule_horizon(), now.schedule_horizon());
    if before != after {
        changes.push(format!(
            "max_steps: {} -> {} (the learning-rate schedule would change from {before} to \
             {after} steps; use --extend-steps to train past the end at the final rate)",
            saved.max_steps, now.max_steps
        ));
    }
    changes
}

/// The fields of `config` that decide the weights, as JSON (the schedule's length is compared
/// apart, since an extension keeps it with another `max_steps`).
fn defining(config: &TrainingConfig) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        for field in REPORTING_FIELDS.iter().chain(&["max_steps"]) {
            object.remove(*field);
        }
        object.insert("seq_len".into(), config.seq_len().into());
        if let Some(schedule) = object.get_mut("schedule").and_then(Value::as_object_mut) {
            schedule.remove("horizon");
        }
    }
    value
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let null = Value::Null;
                diff(
                    &field,
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

/// Loads optimizer and schedule of checkpoint `step` into the learner, and the model too
/// unless `adapters_only` (a fine-tune run, whose adapters were loaded into the model before
/// the learner was built: see `adapters.rs`).
pub(crate) fn restore<B: AutodiffBackend>(
    learner: &mut Learner<ArcaneComponents<B>>,
    run_dir: &Path,
    step: usize,
    adapters_only: bool,
    device: &B::Device,
) -> Result<()> {
    let dir = checkpoint::checkpoint_dir(run_dir);
    let tracker = Arc::new(SaveTracker::default());
    let fail = |name: &str, e: burn::train::checkpoint::CheckpointerError| {
        ArcaneError::format(
            dir.join(format!("{name}-{step}.mpk")),
            format!("cannot read this checkpoint file ({e}); it is corrupt or missing; delete state-{step}.json to resume from the checkpoint before"),
        )
    };
    let file = |name: &str| AtomicCheckpointer::new(&dir, name, tracker.clone());
    if !adapters_only {
        let model = Checkpointer::<_, B>::restore(&file("model"), step, device)
            .map_err(|e| fail("model", e))?;
        learner.load_model(model);
    }
    let optim = Checkpointer::<_, B>::restore(&file("optim"), step, device)
        .map_err(|e| fail("optim", e))?;
    let scheduler = Checkpointer::<_, B>::restore(&file("scheduler"), step, device)
        .map_err(|e| fail("scheduler", e))?;
    learner.load_optim(optim);
    learner.load_scheduler(scheduler);
    Ok(())
}
