//! `arcane-cli prepare`: text files to token shards, with a progress bar.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arcane::data::{prepare, DataManifest, PrepareConfig};
use arcane::ModelTokenizer;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::PrepareArgs;

/// Prepares the inputs and prints a summary.
pub fn run(args: PrepareArgs) -> Result<()> {
    let tokenizer = match &args.model {
        Some(model) => arcane::load_tokenizer(&crate::hub_model::model_dir(model)?)
            .with_context(|| format!("reading the tokenizer of {}", model.display()))?,
        None => ModelTokenizer::gpt2(),
    };
    let config = PrepareConfig {
        inputs: args.input,
        out: args.out,
        val_tokens: args.val_tokens,
        shard_tokens: args.shard_tokens,
        tokenizer,
    };
    let manifest = prepare_with_progress(&config)?;
    println!(
        "{} documents, {} tokens: {} train in {} shard(s), {} validation, in {}",
        manifest.documents,
        manifest.tokens,
        manifest.train_tokens,
        manifest.train_shards.len(),
        manifest.val_tokens,
        config.out.display()
    );
    Ok(())
}

/// Prepares `input` (a file or folder) into `out` with the default split and shard size.
pub fn prepare_default(
    input: PathBuf,
    out: &Path,
    tokenizer: ModelTokenizer,
) -> Result<DataManifest> {
    eprintln!("preparing {} into {}", input.display(), out.display());
    let config = PrepareConfig {
        inputs: vec![input],
        out: out.to_path_buf(),
        val_tokens: None,
        shard_tokens: 100_000_000,
        tokenizer,
    };
    prepare_with_progress(&config)
}

/// Runs `prepare` with a byte-based progress bar (tokens/s in the message).
pub fn prepare_with_progress(config: &PrepareConfig) -> Result<DataManifest> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}")
            .expect("valid template"),
    );
    let start = std::time::Instant::now();
    let manifest = prepare(config, |p| {
        bar.set_length(p.total_bytes.max(p.bytes));
        bar.set_position(p.bytes);
        let rate = p.tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{} tokens, {:.0} tokens/s", p.tokens, rate));
    })
    .with_context(|| format!("preparing {}", config.out.display()))?;
    bar.finish_and_clear();
    Ok(manifest)
}
