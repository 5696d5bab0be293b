//! A subset of nanochat's CORE metric (Li et al. 2024, DCLM; nanochat `core_eval.py`): the
//! mean over tasks of the centred accuracy `(acc − b) / (1 − b)`, `b` the task's random
//! baseline. CORE proper averages 22 tasks, most of them few-shot, from DCLM's eval bundle
//! with its own prompts; this averages the CORE tasks present in a suite run (PIQA, ARC-Easy,
//! ARC-Challenge, WinoGrande, HellaSwag, LAMBADA), zero-shot with lm-eval's prompts, so its
//! value is comparable only with itself. MMLU is no CORE task and is left out. A task
//! counts with `acc_norm` where lm-eval reports it (CORE picks multiple-choice answers by
//! length-normalised loss), else `acc`.

use serde::{Deserialize, Serialize};

use super::{Task, TaskReport};
use crate::eval::metrics::{centred, mean};

/// The CORE-subset figure and what it averaged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoreSubset {
    /// Mean centred accuracy.
    pub value: f64,
    /// `(task, accuracy used, random baseline, centred accuracy)` per task averaged.
    pub tasks: Vec<(String, f64, f64, f64)>,
    /// What the figure is.
    pub note: String,
}

/// The CORE subset over the CORE tasks among `reports`; `None` when there is none.
pub fn core_subset(reports: &[TaskReport]) -> Option<CoreSubset> {
    let tasks: Vec<(String, f64, f64, f64)> = reports
        .iter()
        .filter_map(|r| {
            let task = Task::parse(&r.task).ok()?;
            if task == Task::Mmlu {
                return None;
            }
            let acc = r.acc_norm.unwrap_or(r.acc);
            let b = task.random_baseline();
            Some((r.task.clone(), acc, b, centred(acc, b)))
        })
        .collect();
    if tasks.is_empty() {
        return None;
    }
    let value = mean(&tasks.iter().map(|t| t.3).collect::<Vec<_>>());
    Some(CoreSubset {
        value,
        note: format!(
            "a subset of nanochat's CORE: mean centred accuracy over {} of its 22 tasks, \
             zero-shot with lm-eval prompts; not comparable with CORE",
            tasks.len()
        ),
        tasks,
    })
}
