//! `arcane-cli sft`: supervised fine-tuning on TRL's dataset formats (`{"text"}`,
//! `{"prompt", "completion"}`, `{"messages"}`, conversational prompt/completion) with the loss
//! on completions and assistant turns only, through the same loop as `train` and `finetune`
//! (checkpoints, exact resume, signals, dashboard, metrics.jsonl with TRL's metric names).
//! LoRA by default; `--full` trains every weight. The base model's files are only read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arcane::lora::{LoraConfig, LoraTarget};
use arcane::training::{read_run_config, SftRecipe, TrainingConfig};

use crate::backend::{self, BackendKind};
use crate::cli_sft::SftArgs;
use crate::commands::train::{absolute, finish, free_run_dir, TrainTask};

/// Encodes the data and trains (or resumes) the run.
pub fn run(args: SftArgs, backend_kind: BackendKind) -> Result<()> {
    let resume = args.resume.is_some();
    let (mut config, run_dir) = match &args.resume {
        Some(dir) => resumed(&args, dir)?,
        None => new_run(&args)?,
    };
    config.precision = config.precision.or(backend_kind.precision());
    let base = config
        .finetune
        .as_ref()
        .map(|f| f.base.clone())
        .or(config.init.clone())
        .context("an SFT config names its base")?;
    let mode = match &config.finetune {
        Some(f) => format!("LoRA r={} on {:?}", f.lora.rank, f.lora.targets),
        None => "every weight".into(),
    };
    eprintln!(
        "supervised fine-tuning of {} ({mode}), {} steps of {} examples -> {}",
        base.display(),
        config.max_steps,
        config.micro_batch,
        run_dir.display()
    );
    let data = absolute(&run_dir.join("data"))?;
    let adapters = config.finetune.is_some();
    let task = TrainTask {
        // SFT runs on one device (its masked batches are not split across ranks).
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
    let contents = if adapters {
        format!(
            "the adapter (adapter.json, adapter.safetensors), its chat template, checkpoints and metrics.jsonl \
             are in {0}; use it with --model {1} --adapter {0} (chat, generate, eval), or \
             `arcane-cli lora merge --model {1} --adapter {0} --out DIR` for a model that reward/dpo/ppo start from",
            run_dir.display(),
            base.display()
        )
    } else {
        format!(
            "the fine-tuned model, checkpoints and metrics.jsonl are in {0}; use it with --model {0}",
            run_dir.display()
        )
    };
    finish(&trained, &run_dir, &contents, "sft")
}

/// `--resume DIR`: the run's own config and encoded data.
fn resumed(args: &SftArgs, dir: &Path) -> Result<(TrainingConfig, PathBuf)> {
    let setup = [
        ("--full", args.full),
        ("--lora-rank", args.lora_rank.is_some()),
        ("--lora-alpha", args.lora_alpha.is_some()),
        ("--lora-targets", args.lora_targets.is_some()),
        ("--lora-dropout", args.lora_dropout.is_some()),
        ("--eval-data", args.eval_data.is_some()),
        ("--max-length", args.max_length.is_some()),
        ("--max-steps", args.max_steps.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--lr", args.lr.is_some()),
        ("--micro-batch", args.micro_batch.is_some()),
        ("--eval-every", args.eval_every.is_some()),
        ("--seed", args.seed.is_some()),
        ("--packing", args.packing),
    ];
    super::finetune::refuse_setup_on_resume(&setup)?;
    let mut config = read_run_config(dir)?;
    if config.sft.is_none() {
        bail!(
            "{} is not an SFT run; continue it with the command that started it",
            dir.display()
        );
    }
    if let Some(steps) = args.extend_steps {
        config = config.extended(steps);
    }
    Ok((config, dir.to_path_buf()))
}

/// A new run: the rows encoded into RUN/data with the base's tokenizer and template.
fn new_run(args: &SftArgs) -> Result<(TrainingConfig, PathBuf)> {
    let model_arg = args.model.clone().context("--model is required")?;
    let base = crate::hub_model::model_dir(&model_arg)?;
    let data = args.data.clone().context("--data is required")?;
    let lora = if args.full {
        None
    } else {
        let rank = args.lora_rank.unwrap_or(8);
        let targets = args
            .lora_targets
            .clone()
            .unwrap_or_else(|| ["q", "k", "v", "o", "mlp"].map(String::from).to_vec())
            .iter()
            .map(|t| t.parse::<LoraTarget>())
            .collect::<arcane::Result<Vec<_>>>()?;
        Some(LoraConfig {
            rank,
            alpha: args.lora_alpha.unwrap_or(2.0 * rank as f64),
            dropout: args.lora_dropout.unwrap_or(0.0),
            targets,
        })
    };
    let defaults = SftRecipe::new(&base, &data, lora);
    let recipe = SftRecipe {
        eval_data: args.eval_data.clone(),
        max_length: args.max_length.unwrap_or(defaults.max_length),
        micro_batch: args.micro_batch.unwrap_or(defaults.micro_batch),
        max_steps: args.max_steps,
        epochs: args.epochs.unwrap_or(defaults.epochs),
        lr: args.lr,
        eval_every: args.eval_every,
        skip_bad: args.skip_bad,
        seed: args.seed.unwrap_or(defaults.seed),
        packing: args.packing,
        hub: crate::hub_model::hub_source(&model_arg),
        ..defaults
    };
    let run_dir = args.out.clone().unwrap_or_else(|| free_run_dir("sft"));
    if run_dir.exists() && !run_dir.is_dir() {
        bail!(
            "--out {} is a file, not a run folder; choose another --out",
            run_dir.display()
        );
    }
    if !arcane::training::checkpoint_steps(&run_dir)?.is_empty() {
        bail!(
            "{} already holds checkpoints; continue it with --resume {0} or choose another --out",
            run_dir.display()
        );
    }
    let (config, prepared) = recipe
        .prepare(&run_dir)
        .with_context(|| format!("preparing SFT of {} on {}", base.display(), data.display()))?;
    for (file, bad) in &prepared.bad {
        eprintln!(
            "skipped {} line {}: {}",
            file.display(),
            bad.line,
            bad.reason
        );
    }
    for note in &prepared.notes {
        eprintln!("note: {note}");
    }
    let s = &prepared.stats;
    if s.truncated + s.dropped + s.boundary_mismatches > 0 {
        eprintln!(
            "note: {} example(s) cut to --max-length, {} left without loss tokens and dropped, {} whose \
             prompt tokens are not a prefix of prompt+completion's (TRL warns likewise)",
            s.truncated, s.dropped, s.boundary_mismatches
        );
    }
    eprintln!(
        "{} training and {} held-out examples ({})",
        prepared.train,
        prepared.val,
        prepared.format.map_or("", |f| f.describe())
    );
    Ok((config, run_dir))
}
