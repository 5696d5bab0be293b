//! Model arguments that name a Hub model (`ORG/NAME[@REVISION]`): resolved once per process
//! into the Hugging Face cache, with a progress bar per downloaded file and the resolved
//! commit on stderr, and remembered so that run configs can record where a base came from.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;
use arcane::hub::{HubOptions, HubSource, Progress, ResolvedModel};
use indicatif::{ProgressBar, ProgressStyle};

/// The Hub models resolved in this process, by the argument that named them.
static RESOLVED: Mutex<Vec<(PathBuf, ResolvedModel)>> = Mutex::new(Vec::new());

/// The folder of the model argument `arg`: `arg` itself when that path exists (a local folder
/// always wins) or does not read `ORG/NAME[@REVISION]`; otherwise the Hub model's snapshot in
/// the cache, downloaded if needed (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`,
/// `HF_HUB_OFFLINE`, ... as in Python).
pub fn model_dir(arg: &Path) -> Result<PathBuf> {
    if arg.exists() {
        return Ok(arg.to_path_buf());
    }
    let Some(id) = arg.to_str().filter(|s| arcane::hub::looks_like_repo_id(s)) else {
        return Ok(arg.to_path_buf());
    };
    if let Some(model) = remembered(arg) {
        return Ok(model.dir);
    }
    let options = HubOptions::from_env()?;
    let model = arcane::hub::resolve(id, &options, &mut Bars::default())?;
    let source = &model.source;
    eprintln!(
        "resolved {}@{} to commit {}{}",
        source.repo,
        source.revision,
        source.commit,
        if model.from_cache_only {
            " (from the cache, without asking the Hub)"
        } else {
            ""
        }
    );
    let dir = model.dir.clone();
    lock().push((arg.to_path_buf(), model));
    Ok(dir)
}

/// Repository, revision and commit of a model argument that named a Hub model (resolved by
/// [`model_dir`] before), for run configs; `None` for a local folder.
pub fn hub_source(arg: &Path) -> Option<HubSource> {
    remembered(arg).map(|m| m.source)
}

fn remembered(arg: &Path) -> Option<ResolvedModel> {
    lock()
        .iter()
        .find(|(a, _)| a == arg)
        .map(|(_, model)| model.clone())
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(PathBuf, ResolvedModel)>> {
    RESOLVED.lock().unwrap_or_else(|e| e.into_inner())
}

/// One indicatif bar per downloaded file, on stderr (hidden when it is not a terminal).
#[derive(Default)]
struct Bars(Option<ProgressBar>);

impl Progress for Bars {
    fn start(&mut self, file: &str, total: u64, done: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})",
            )
            .expect("valid template"),
        );
        bar.set_message(file.to_string());
        bar.set_position(done);
        self.0 = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self, _file: &str) {
        if let Some(bar) = self.0.take() {
            bar.finish();
        }
    }
}
