//! `sft`'s flags (beside the other argument types: `cli` must not depend on `commands`).

use std::path::PathBuf;

use clap::Args;

/// `sft`
#[derive(Debug, Args)]
pub struct SftArgs {
    /// The starting model (Arcane or Hugging Face folder); its files are never written.
    #[arg(long, required_unless_present = "resume")]
    pub model: Option<PathBuf>,
    /// Training rows, JSONL (.gz too) in one of TRL's formats.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Held-out rows in the same format (default: every 20th training row is held out).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The run folder (default: runs/sft, or runs/sft-2, ... if taken).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train every weight instead of LoRA adapters.
    #[arg(long, conflicts_with_all = ["lora_rank", "lora_alpha", "lora_targets", "lora_dropout"])]
    pub full: bool,
    /// Rank of the adapters [default: 8].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_rank: Option<usize>,
    /// Scale numerator: the update is multiplied by alpha / rank [default: 2 x rank].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_alpha: Option<f64>,
    /// Projections that get adapters: q, k, v, o, mlp, head [default: q,k,v,o,mlp].
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Option<Vec<String>>,
    /// Dropout on the adapters' input [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_dropout: Option<f64>,
    /// Longest example in tokens; longer ones keep their start [default: 1024, at most the
    /// model's context + 1].
    #[arg(long, allow_negative_numbers = true)]
    pub max_length: Option<usize>,
    /// Optimizer steps [default: --epochs passes over the training examples].
    #[arg(long, allow_negative_numbers = true)]
    pub max_steps: Option<usize>,
    /// Passes over the data when --max-steps is not given [default: 3].
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Peak learning rate [default: 2e-5 with --full, 1e-4 with LoRA].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Examples per step [default: 8].
    #[arg(long, allow_negative_numbers = true)]
    pub micro_batch: Option<usize>,
    /// Steps between validation losses and checkpoints [default: a quarter of the run].
    #[arg(long, allow_negative_numbers = true)]
    pub eval_every: Option<usize>,
    /// Seed of the data order and of the adapters [default: 1337].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Pack several examples into each row of --max-length tokens (Best-Fit Decreasing);
    /// attention stays inside each example and positions restart, so no example sees another.
    #[arg(long)]
    pub packing: bool,
    /// Skip malformed rows (each reported with its line number) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Continue an SFT run from its last checkpoint; the flags that set up a run cannot change.
    #[arg(long, conflicts_with_all = ["model", "data", "out"])]
    pub resume: Option<PathBuf>,
    /// With --resume: train N steps past the run's end, at the schedule's final rate.
    #[arg(long, allow_negative_numbers = true, requires = "resume")]
    pub extend_steps: Option<usize>,
    /// Plain log lines even on a terminal (no dashboard).
    #[arg(long)]
    pub no_dashboard: bool,
}
