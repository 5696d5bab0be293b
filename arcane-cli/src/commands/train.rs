//! `arcane-cli train`: pre-train or resume a run, then print a sample.
//!
//! With no arguments it trains `tiny-cpu` on the bundled Moby-Dick corpus (prepared on first
//! use) into `runs/tiny-cpu`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arcane::data::DataManifest;
use arcane::training::{
    read_run_config, train_data_parallel, LoopOutcome, StopReason, TrainOptions, TrainingConfig,
};
use arcane::ModelTokenizer;
use burn::backend::Autodiff;
use burn::train::Interrupter;
use serde::{Deserialize, Serialize};

use crate::backend::{self, BackendKind, DevicesTask, TrainBackend};
use crate::cli::TrainArgs;
use crate::commands::prepare::prepare_default;
use crate::signals::{signal_name, SignalStop, Stopped};

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
    let resume = args.resume.is_some();
    // A resumed run's run.json is rewritten only once the checkpoint has been accepted.
    let data = if resume {
        absolute(&data)?
    } else {
        write_run_file(&run.dir, &data, backend_kind)?
    };
    let peak_flops = args
        .peak_tflops
        .map(|t| t * 1e12)
        .or_else(|| match backend_kind {
            BackendKind::Cuda => backend::nvidia_gpu_name(devices[0])
                .and_then(|n| arcane::training::peak_flops_for(&n)),
            _ => None,
        });
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
    let ddp = use_ddp(backend_kind, args.devices.is_some(), devices.len());
    let task = TrainTask {
        ddp,
        config: run.config,
        run_dir: run.dir.clone(),
        data,
        resume,
        dashboard: if args.no_dashboard { Some(false) } else { None },
        peak_flops,
        backend: backend_kind,
    };
    let trained = backend::run_on_devices(backend_kind, &devices, task)?;
    let contents = format!(
        "model, checkpoints, metrics.jsonl and loss.png are in {} (use it as --model for generate and eval loss)",
        run.dir.display()
    );
    finish(&trained, &run.dir, &contents, "train")
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

/// `--resume DIR`: the run's own config and data. Flags that would change the weights are
/// refused (the library refuses an edited config.json the same way); `--extend-steps` is the
/// one planned change.
fn resumed_run(args: &TrainArgs, dir: &Path) -> Result<RunSpec> {
    let mut config = read_run_config(dir)?;
    for (flag, set, why) in [
        ("--max-steps", args.max_steps.is_some(), "it sets the learning-rate schedule; use --extend-steps N to train a finished run further"),
        ("--micro-batch", args.micro_batch.is_some(), "it would change the data order of the run"),
        ("--tokens-per-step", args.tokens_per_step.is_some(), "it would change the data order of the run"),
    ] {
        if set {
            bail!("{flag} cannot change on --resume: {why}");
        }
    }
    if let Some(steps) = args.extend_steps {
        config = config.extended(steps);
    }
    let data = match &args.data {
        Some(data) => data.clone(),
        None => saved_data(dir)?,
    };
    Ok(RunSpec {
        config,
        name: None,
        dir: dir.to_path_buf(),
        data: Some(data),
    })
}

/// The data a run was started on, from its `run.json` (an absolute path; a relative one, of
/// older runs, is tried as given and then beside the run folder).
pub(crate) fn saved_data(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(RUN_FILE);
    let saved: RunFile = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run file; pass --data", path.display()))?,
        Err(_) => bail!(
            "{} has no {RUN_FILE}; pass --data with the run's prepared data",
            dir.display()
        ),
    };
    let beside = dir.parent().map(|p| p.join(&saved.data));
    match beside {
        Some(beside) if !saved.data.exists() && saved.data.is_relative() && beside.exists() => {
            Ok(beside)
        }
        _ => Ok(saved.data),
    }
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
    if dir.exists() && !dir.is_dir() {
        bail!(
            "--out {} is a file, not a run folder; choose another --out",
            dir.display()
        );
    }
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
    }
    if let Some(v) = args.log_every {
        config.log_every = v;
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
    if let Some(tasks) = &args.suite.eval_suite {
        let tasks: Vec<String> = match tasks.trim() {
            "all" => Vec::new(),
            list => list.split(',').map(|t| t.trim().to_string()).collect(),
        };
        let defaults = arcane::training::EvalSuiteEval::default();
        config.eval_suite = Some(arcane::training::EvalSuiteEval {
            tasks,
            every: args.suite.eval_suite_every.unwrap_or(config.eval_every),
            limit: args.suite.eval_suite_limit.or(defaults.limit),
            ..defaults
        });
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
    /// Train with Burn's NCCL data parallel (`use_ddp`).
    pub(crate) ddp: bool,
    pub(crate) config: TrainingConfig,
    pub(crate) run_dir: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) resume: bool,
    pub(crate) dashboard: Option<bool>,
    pub(crate) peak_flops: Option<f64>,
    pub(crate) backend: BackendKind,
}

/// How a run ended, and the signal that stopped it, if one did.
pub(crate) struct Trained {
    outcome: LoopOutcome,
    signal: Option<i32>,
}

impl TrainTask {
    fn train<B: burn::tensor::backend::AutodiffBackend + TrainBackend>(
        self,
        devices: Vec<B::Device>,
    ) -> Result<Trained> {
        let interrupter = Interrupter::new();
        let signals = SignalStop::install(interrupter.clone())?;
        let mut options = TrainOptions::<B>::new(&self.run_dir, &self.data);
        options.resume = self.resume;
        options.dashboard = self.dashboard;
        options.peak_flops = self.peak_flops;
        options.shapes = self.backend.shapes();
        options.interrupter = Some(interrupter);
        let (run_dir, data, backend, resume) = (
            self.run_dir.clone(),
            self.data.clone(),
            self.backend,
            self.resume,
        );
        options.on_start = Some(Arc::new(move || {
            SignalStop::terminal_signals();
            if resume {
                if let Err(e) = write_run_file(&run_dir, &data, backend) {
                    eprintln!("warning: {e:#}");
                }
            }
        }));
        let outcome = train_run::<B>(self.config, options, devices, self.ddp)?;
        Ok(Trained {
            outcome,
            signal: signals.caught(),
        })
    }
}

/// Whether a run trains with Burn's NCCL data parallel: in a `cuda-ddp` build, on CUDA with
/// `--devices` given (one device is a valid, degenerate run). Otherwise several devices
/// gather their gradients on the first one.
fn use_ddp(kind: BackendKind, devices_given: bool, devices: usize) -> bool {
    let ddp = cfg!(feature = "cuda-ddp") && kind == BackendKind::Cuda && devices_given;
    if !ddp && kind == BackendKind::Cuda && devices > 1 {
        eprintln!(
            "note: the {devices} GPUs gather their gradients on the first one; for NCCL data \
             parallel build with `cargo build --release -p arcane-cli --no-default-features \
             --features cuda-ddp`"
        );
    }
    ddp
}

/// Trains with Burn's NCCL data parallel when `ddp` (only a `cuda-ddp` build sets it), else
/// on one device or gathering the gradients of several on the first.
fn train_run<B: burn::tensor::backend::AutodiffBackend + TrainBackend>(
    config: TrainingConfig,
    options: TrainOptions<B>,
    devices: Vec<B::Device>,
    ddp: bool,
) -> arcane::Result<LoopOutcome> {
    #[cfg(feature = "cuda-ddp")]
    if ddp {
        return arcane::training::train_ddp::<B>(config, options, devices);
    }
    let _ = ddp;
    train_data_parallel::<B>(config, options, devices)
}

impl DevicesTask for TrainTask {
    type Output = Trained;

    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Trained> {
        // Activation checkpointing is a flag of the training step (`config`), not a backend.
        self.train::<Autodiff<B>>(devices)
    }
}

/// Prints how a run ended; a run stopped by a signal becomes the error `main` exits with
/// (130 or 143), saying how to resume it with `command` (`train` or `finetune`).
pub(crate) fn finish(
    trained: &Trained,
    run_dir: &Path,
    contents: &str,
    command: &str,
) -> Result<()> {
    let outcome = &trained.outcome;
    let resume = format!("arcane-cli {command} --resume {}", run_dir.display());
    if outcome.stop == StopReason::Interrupted && trained.signal.is_none() {
        println!(
            "stopped at step {}; continue it with `{resume}`",
            outcome.step
        );
    }
    if outcome.stop == StopReason::Finished && outcome.train_loss.is_none() {
        println!(
            "the run had already finished at step {}; `{resume} --extend-steps N` trains it further",
            outcome.step
        );
        return Ok(());
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
    match (trained.signal, &outcome.stop) {
        (Some(signal), StopReason::Interrupted) => {
            let saved = match outcome.checkpoint {
                Some(step) => format!("checkpoint {step} is complete"),
                None => "no step was taken, so there is no checkpoint".into(),
            };
            Err(Stopped {
                signal,
                message: format!(
                    "stopped by {} after step {} ({saved}); continue with `{resume}`",
                    signal_name(signal),
                    outcome.step
                ),
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// Records where the run's data is (for --resume) in `RUN_DIR/run.json`, as an absolute path
/// so that the run resumes from any working directory; returns that path.
pub(crate) fn write_run_file(
    run_dir: &Path,
    data: &Path,
    backend_kind: BackendKind,
) -> Result<PathBuf> {
    let data = absolute(data)?;
    let file = RunFile {
        data: data.clone(),
        backend: backend_kind.name().into(),
    };
    arcane::io::write_atomic(
        &run_dir.join(RUN_FILE),
        serde_json::to_string_pretty(&file)?.as_bytes(),
    )?;
    Ok(data)
}

/// `path` made absolute (from the working directory), not resolving links.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving the path {}", path.display()))
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
    prepare_default(source, &data, ModelTokenizer::gpt2())?;
    Ok(data)
}
