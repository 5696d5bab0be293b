//! `arcane-cli train`: pre-train or resume a run, then print a sample.
//!
//! With no arguments it trains `tiny-cpu` on the bundled Moby-Dick corpus (prepared on first
//! use) into `runs/tiny-cpu`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arcane::data::DataManifest;
use arcane::training::{
    read_run_config, train_data_parallel, LoopOutcome, StopReason, TrainOptions, TrainingConfig,
};
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{self, BackendKind, DevicesTask};
use crate::cli::TrainArgs;
use crate::commands::prepare::prepare_default;

/// The bundled corpus, embedded so that the binary trains out of the box anywhere.
const CORPUS: &[u8] = include_bytes!("../../corpus/moby-dick.txt.gz");
/// Where the bundled corpus is prepared.
const DEFAULT_DATA: &str = "data/moby-dick";
/// The run's launch details the training config does not hold.
pub(crate) const RUN_FILE: &str = "run.json";

#[derive(Serialize, Deserialize)]
pub(crate) struct RunFile {
    pub(crate) data: PathBuf,
    pub(crate) backend: String,
}

/// Resolves config, data and run folder, then trains on the chosen backend.
pub fn run(args: TrainArgs, backend_kind: BackendKind) -> Result<()> {
    let devices = args.devices.clone().unwrap_or_else(|| vec![0]);
    if devices.is_empty() {
        bail!("--devices needs at least one device index");
    }
    let mut run = match &args.resume {
        Some(dir) => resumed_run(&args, dir)?,
        None => new_run(&args)?,
    };
    apply_flags(&mut run.config, &args);
    run.config.precision = run.config.precision.or(backend_kind.precision());
    run.config
        .validate(devices.len())
        .context("the training config does not fit")?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&run.config)?);
        return Ok(());
    }
    let data = match run.data {
        Some(data) => data,
        None => bundled_corpus()?,
    };
    write_run_file(&run.dir, &data, backend_kind)?;
    let peak_flops = args
        .peak_tflops
        .map(|t| t * 1e12)
        .or_else(|| match backend_kind {
            BackendKind::Cuda => backend::nvidia_gpu_name(devices[0])
                .and_then(|n| arcane::training::peak_flops_for(&n)),
            _ => None,
        });
    let resume = args.resume.is_some();
    eprintln!(
        "{} {} on {} ({} parameters, {} steps of {} tokens) -> {}",
        if resume { "resuming" } else { "training" },
        run.name.unwrap_or_else(|| run.dir.display().to_string()),
        backend_kind.name(),
        run.config.model.num_params(),
        run.config.max_steps,
        run.config.tokens_per_step,
        run.dir.display()
    );
    let task = TrainTask {
        config: run.config,
        run_dir: run.dir.clone(),
        data,
        resume,
        dashboard: if args.no_dashboard { Some(false) } else { None },
        peak_flops,
        shapes: backend_kind.shapes(),
    };
    let outcome = backend::run_on_devices(backend_kind, &devices, task)?;
    let contents = format!(
        "model, checkpoints, metrics.jsonl and loss.png are in {} (use it as --model for generate and eval loss)",
        run.dir.display()
    );
    report(&outcome, &run.dir, &contents);
    Ok(())
}

/// A run as the command line describes it, before the flags that override the config.
struct RunSpec {
    config: TrainingConfig,
    /// The preset or config file name, for a new run.
    name: Option<String>,
    dir: PathBuf,
    /// The prepared data (`None`: the bundled corpus).
    data: Option<PathBuf>,
}

/// `--resume DIR`: the run's own config and data.
fn resumed_run(args: &TrainArgs, dir: &Path) -> Result<RunSpec> {
    let config = read_run_config(dir)?;
    for (flag, set) in [
        ("--micro-batch", args.micro_batch.is_some()),
        ("--tokens-per-step", args.tokens_per_step.is_some()),
    ] {
        if set {
            bail!("{flag} cannot change on --resume: it would change the data order of the run");
        }
    }
    let saved: Option<RunFile> = std::fs::read_to_string(dir.join(RUN_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let data = match (&args.data, saved) {
        (Some(data), _) => data.clone(),
        (None, Some(saved)) => saved.data,
        (None, None) => bail!(
            "{} has no {RUN_FILE}; pass --data with the run's prepared data",
            dir.display()
        ),
    };
    Ok(RunSpec {
        config,
        name: None,
        dir: dir.to_path_buf(),
        data: Some(data),
    })
}

/// A new run from `--config` (a preset name or a file; `tiny-cpu` by default).
fn new_run(args: &TrainArgs) -> Result<RunSpec> {
    let name = args.config.clone().unwrap_or_else(|| "tiny-cpu".into());
    let config = match TrainingConfig::preset(&name) {
        Some(config) => config,
        None if Path::new(&name).is_file() => TrainingConfig::from_file(Path::new(&name))?,
        None => bail!(
            "{name:?} is neither a training preset ({}) nor a config file",
            arcane::training::TRAINING_PRESETS.join(", ")
        ),
    };
    let stem = Path::new(&name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("run")
        .to_string();
    let dir = args.out.clone().unwrap_or_else(|| free_run_dir(&stem));
    Ok(RunSpec {
        config,
        name: Some(stem),
        dir,
        data: args.data.clone(),
    })
}

/// The flags that override fields of the config.
fn apply_flags(config: &mut TrainingConfig, args: &TrainArgs) {
    if let Some(v) = args.max_steps {
        config.max_steps = v;
    }
    if let Some(v) = args.checkpoint_every {
        config.checkpoint_every = v;
    }
    if let Some(v) = args.eval_every {
        config.eval_every = v;
        if args.checkpoint_every.is_none() && config.checkpoint_every % v != 0 {
            config.checkpoint_every = v;
        }
    }
    if let Some(v) = args.micro_batch {
        config.micro_batch = v;
    }
    if let Some(v) = args.tokens_per_step {
        config.tokens_per_step = v;
    }
    if args.activation_checkpointing {
        config.activation_checkpointing = true;
    }
    if let Some(precision) = args.precision {
        config.precision = precision;
    }
    if let Some(data) = &args.hellaswag {
        config.hellaswag = Some(arcane::training::HellaswagEval {
            data: data.clone(),
            every: args.hellaswag_every.unwrap_or(config.eval_every),
            limit: args.hellaswag_limit,
            ..Default::default()
        });
    }
}

pub(crate) struct TrainTask {
    pub(crate) config: TrainingConfig,
    pub(crate) run_dir: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) resume: bool,
    pub(crate) dashboard: Option<bool>,
    pub(crate) peak_flops: Option<f64>,
    pub(crate) shapes: arcane::shapes::FixedShapes,
}

impl TrainTask {
    fn train<B: burn::tensor::backend::AutodiffBackend>(
        self,
        devices: Vec<B::Device>,
    ) -> Result<LoopOutcome> {
        let mut options = TrainOptions::<B>::new(&self.run_dir, &self.data);
        options.resume = self.resume;
        options.dashboard = self.dashboard;
        options.peak_flops = self.peak_flops;
        options.shapes = self.shapes;
        Ok(train_data_parallel::<B>(self.config, options, devices)?)
    }
}

impl DevicesTask for TrainTask {
    type Output = LoopOutcome;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<LoopOutcome> {
        // Each choice is another copy of the generic training code: two per backend.
        if self.config.activation_checkpointing {
            self.train::<Autodiff<B, BalancedCheckpointing>>(devices)
        } else {
            self.train::<Autodiff<B>>(devices)
        }
    }
}

pub(crate) fn report(outcome: &LoopOutcome, run_dir: &Path, contents: &str) {
    if outcome.stop == StopReason::Interrupted {
        println!(
            "stopped at step {}; continue it with --resume {}",
            outcome.step,
            run_dir.display()
        );
    }
    let val = outcome.val_loss.map_or("-".into(), |v| format!("{v:.4}"));
    let mfu = outcome
        .mfu
        .map_or(String::new(), |m| format!(", MFU {:.1}%", 100.0 * m));
    println!(
        "step {}: validation loss {val}, {:.0} tokens/s{mfu}",
        outcome.step, outcome.tokens_per_s
    );
    println!("{contents}",);
    if let Some(sample) = &outcome.sample {
        println!("sample:\n{sample}");
    }
}

/// Records where the run's data is (for --resume) in `RUN_DIR/run.json`.
pub(crate) fn write_run_file(run_dir: &Path, data: &Path, backend_kind: BackendKind) -> Result<()> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let file = RunFile {
        data: data.to_path_buf(),
        backend: backend_kind.name().into(),
    };
    std::fs::write(run_dir.join(RUN_FILE), serde_json::to_string_pretty(&file)?)?;
    Ok(())
}

/// `runs/NAME`, or `runs/NAME-2`, `-3`, ... when taken.
pub(crate) fn free_run_dir(name: &str) -> PathBuf {
    let base = PathBuf::from("runs");
    (1..)
        .map(|i| {
            if i == 1 {
                base.join(name)
            } else {
                base.join(format!("{name}-{i}"))
            }
        })
        .find(|p| !p.exists())
        .expect("some run folder is free")
}

/// Writes the embedded corpus and prepares it, once.
fn bundled_corpus() -> Result<PathBuf> {
    let data = PathBuf::from(DEFAULT_DATA);
    if DataManifest::read(&data).ok().flatten().is_some() {
        return Ok(data);
    }
    let source = data.join("source");
    std::fs::create_dir_all(&source).with_context(|| format!("creating {}", source.display()))?;
    let file = source.join("moby-dick.txt.gz");
    std::fs::write(&file, CORPUS).with_context(|| format!("writing {}", file.display()))?;
    prepare_default(source, &data)?;
    Ok(data)
}
