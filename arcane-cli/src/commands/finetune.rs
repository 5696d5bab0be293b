//! `arcane-cli finetune`: LoRA fine-tuning with the same Learner, schedule, metrics,
//! checkpoints and dashboard as pre-training. The run folder keeps only the adapters (its
//! checkpoints too: no copy of the frozen base).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arcane::lora::{LoraConfig, LoraTarget};
use arcane::training::{read_run_config, FinetuneRecipe, TrainingConfig};

use crate::backend::{self, BackendKind};
use crate::cli::FinetuneArgs;
use crate::commands::prepare::prepare_default;
use crate::commands::train::{
    absolute, finish, free_run_dir, saved_data, write_run_file, TrainTask,
};

/// Builds the fine-tune config from the base model and the flags (or reads the run's own on
/// `--resume`), then trains.
pub fn run(args: FinetuneArgs, backend_kind: BackendKind) -> Result<()> {
    let resume = args.resume.is_some();
    let (mut config, run_dir, data) = match &args.resume {
        Some(dir) => resumed(&args, dir)?,
        None => new_run(&args)?,
    };
    config.precision = config.precision.or(backend_kind.precision());
    let finetune = config.finetune.as_ref().context("a fine-tune config")?;
    let trainable = finetune.lora.trainable_params(&config.model);
    let total = config.model.num_params();
    eprintln!(
        "fine-tuning {} with LoRA r={} on {:?}: {trainable} trainable of {} parameters ({:.3}%) -> {}",
        finetune.base_label(),
        finetune.lora.rank,
        finetune.lora.targets,
        total + trainable,
        100.0 * trainable as f64 / (total + trainable) as f64,
        run_dir.display()
    );
    let base = finetune.base_label();
    let data = if resume {
        absolute(&data)?
    } else {
        write_run_file(&run_dir, &data, backend_kind)?
    };
    let task = TrainTask {
        ddp: false,
        config,
        run_dir: run_dir.clone(),
        data,
        resume,
        dashboard: if args.no_dashboard { Some(false) } else { None },
        peak_flops: None,
        backend: backend_kind,
    };
    let trained = backend::run_on_devices(backend_kind, &[0], task)?;
    let contents = format!(
        "the adapter (adapter.json, adapter.safetensors), checkpoints, metrics.jsonl and loss.png are in {0}; \
         use it with --model {1} --adapter {0} for generate and eval, or `arcane-cli lora merge` to export a merged model",
        run_dir.display(),
        base
    );
    finish(&trained, &run_dir, &contents, "finetune")
}

/// `--resume DIR`: the run's own config and data; the flags that set up a run are refused.
fn resumed(args: &FinetuneArgs, dir: &Path) -> Result<(TrainingConfig, PathBuf, PathBuf)> {
    let setup = [
        ("--lora-rank", args.lora_rank.is_some()),
        ("--lora-alpha", args.lora_alpha.is_some()),
        ("--lora-targets", args.lora_targets.is_some()),
        ("--lora-dropout", args.lora_dropout.is_some()),
        ("--max-steps", args.max_steps.is_some()),
        ("--lr", args.lr.is_some()),
        ("--micro-batch", args.micro_batch.is_some()),
        ("--seq-len", args.seq_len.is_some()),
        ("--eval-every", args.eval_every.is_some()),
    ];
    refuse_setup_on_resume(&setup)?;
    let mut config = read_run_config(dir)?;
    if config.finetune.is_none() {
        bail!(
            "{} is a pre-training run; continue it with `arcane-cli train --resume`",
            dir.display()
        );
    }
    if let Some(steps) = args.extend_steps {
        config = config.extended(steps);
    }
    let data = match &args.data {
        Some(data) => data.clone(),
        None => saved_data(dir)?,
    };
    Ok((config, dir.to_path_buf(), data))
}

/// A new run: the recipe with the flags, its data prepared with the base model's tokenizer
/// when it is a text file, and sequences fitted to a small training text.
fn new_run(args: &FinetuneArgs) -> Result<(TrainingConfig, PathBuf, PathBuf)> {
    let model_arg = args.model.clone().context("--model is required")?;
    let base = crate::hub_model::model_dir(&model_arg)?;
    let rank = args.lora_rank.unwrap_or(8);
    let targets = args
        .lora_targets
        .clone()
        .unwrap_or_else(|| vec!["q".into(), "k".into()])
        .iter()
        .map(|t| t.parse::<LoraTarget>())
        .collect::<arcane::Result<Vec<_>>>()?;
    let lora = LoraConfig {
        rank,
        alpha: args.lora_alpha.unwrap_or(2.0 * rank as f64),
        dropout: args.lora_dropout.unwrap_or(0.0),
        targets,
    };
    let defaults = FinetuneRecipe::new(&base, lora);
    let recipe = FinetuneRecipe {
        max_steps: args.max_steps.unwrap_or(defaults.max_steps),
        lr: args.lr.unwrap_or(defaults.lr),
        micro_batch: args.micro_batch.unwrap_or(defaults.micro_batch),
        seq_len: args.seq_len,
        eval_every: args.eval_every.unwrap_or(defaults.eval_every),
        hub: crate::hub_model::hub_source(&model_arg),
        ..defaults
    };
    // Checks the adapters against the base before any data is prepared.
    recipe
        .config()
        .with_context(|| format!("fine-tuning {}", base.display()))?;
    let run_dir = args.out.clone().unwrap_or_else(|| free_run_dir("finetune"));
    if run_dir.exists() && !run_dir.is_dir() {
        bail!(
            "--out {} is a file, not a run folder; choose another --out",
            run_dir.display()
        );
    }
    let input = args.data.clone().context("--data is required")?;
    let data = if input.is_dir() {
        input
    } else {
        let data = run_dir.join("data");
        let tokenizer = arcane::load_tokenizer(&base)
            .with_context(|| format!("reading the tokenizer of {}", base.display()))?;
        prepare_default(input, &data, tokenizer)?;
        data
    };
    let (config, notice) = recipe
        .config_for_data(&data)
        .with_context(|| format!("fine-tuning {}", base.display()))?;
    if let Some(notice) = notice {
        eprintln!("note: {notice}");
    }
    Ok((config, run_dir, data))
}

/// Refuses setup flags given with `--resume` (`(flag, given)` pairs): a resumed run keeps the
/// settings it started with, so that it continues exactly.
pub(crate) fn refuse_setup_on_resume(setup: &[(&str, bool)]) -> Result<()> {
    let given: Vec<&str> = setup
        .iter()
        .filter(|(_, set)| *set)
        .map(|(f, _)| *f)
        .collect();
    if !given.is_empty() {
        bail!(
            "{} cannot change on --resume: the run keeps the settings it started with \
             (--extend-steps N trains it further)",
            given.join(", ")
        );
    }
    Ok(())
}
