//! `arcane-cli finetune`: LoRA fine-tuning with the same Learner, schedule, metrics,
//! checkpoints and dashboard as pre-training. The run folder keeps only the adapters.

use anyhow::{bail, Context, Result};
use arcane::lora::{LoraConfig, LoraTarget};
use arcane::training::{read_run_config, FinetuneRecipe};

use crate::backend::{self, BackendKind};
use crate::cli::FinetuneArgs;
use crate::commands::prepare::prepare_default;
use crate::commands::train::{free_run_dir, report, write_run_file, RunFile, TrainTask, RUN_FILE};

/// Builds the fine-tune config from the base model and the flags, then trains.
pub fn run(args: FinetuneArgs, backend_kind: BackendKind) -> Result<()> {
    let (config, run_dir, data, resume) = match &args.resume {
        Some(dir) => {
            let config = read_run_config(dir)?;
            if config.finetune.is_none() {
                bail!(
                    "{} is a pre-training run; continue it with `arcane-cli train --resume`",
                    dir.display()
                );
            }
            let saved: RunFile = serde_json::from_str(
                &std::fs::read_to_string(dir.join(RUN_FILE))
                    .with_context(|| format!("reading {}", dir.join(RUN_FILE).display()))?,
            )?;
            (config, dir.clone(), saved.data, true)
        }
        None => {
            let base = args.model.clone().expect("clap requires --model");
            let targets = args
                .lora_targets
                .iter()
                .map(|t| t.parse::<LoraTarget>())
                .collect::<arcane::Result<Vec<_>>>()?;
            let lora = LoraConfig {
                rank: args.lora_rank,
                alpha: args.lora_alpha.unwrap_or(2.0 * args.lora_rank as f64),
                dropout: args.lora_dropout,
                targets,
            };
            let recipe = FinetuneRecipe {
                max_steps: args.max_steps,
                lr: args.lr,
                micro_batch: args.micro_batch,
                seq_len: args.seq_len,
                eval_every: args.eval_every,
                ..FinetuneRecipe::new(&base, lora)
            };
            let config = recipe
                .config()
                .with_context(|| format!("fine-tuning {}", base.display()))?;
            let run_dir = args.out.clone().unwrap_or_else(|| free_run_dir("finetune"));
            let input = args.data.clone().expect("clap requires --data");
            let data = if input.is_dir() {
                input
            } else {
                let data = run_dir.join("data");
                prepare_default(input, &data)?;
                data
            };
            (config, run_dir, data, false)
        }
    };
    let finetune = config.finetune.as_ref().expect("a fine-tune config");
    let trainable = finetune.lora.trainable_params(&config.model);
    let total = config.model.num_params();
    eprintln!(
        "fine-tuning {} with LoRA r={} on {:?}: {trainable} trainable of {} parameters ({:.3}%) -> {}",
        finetune.base.display(),
        finetune.lora.rank,
        finetune.lora.targets,
        total + trainable,
        100.0 * trainable as f64 / (total + trainable) as f64,
        run_dir.display()
    );
    let base = finetune.base.clone();
    write_run_file(&run_dir, &data, backend_kind)?;
    let task = TrainTask {
        config,
        run_dir: run_dir.clone(),
        data,
        resume,
        dashboard: if args.no_dashboard { Some(false) } else { None },
        peak_flops: None,
        shapes: backend_kind.shapes(),
    };
    let outcome = backend::run_on_devices(backend_kind, &[0], task)?;
    let contents = format!(
        "the adapter (adapter.json, adapter.safetensors), checkpoints, metrics.jsonl and loss.png are in {0}; \
         use it with --model {1} --adapter {0} for generate and eval, or `arcane-cli lora merge` to export a merged model",
        run_dir.display(),
        base.display()
    );
    report(&outcome, &run_dir, &contents);
    Ok(())
}
