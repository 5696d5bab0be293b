//! The command line of alignment (`reward`, `dpo`, `ppo`, `rloo`, `eval reward`), as clap
//! types. Parsing only; the defaults are those of `arcane::align`'s configs.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `reward ...`
#[derive(Debug, Subcommand)]
pub enum RewardCommand {
    /// Train a reward model on preference pairs (Bradley-Terry loss).
    Train(RewardTrainArgs),
    /// Pairwise accuracy of a reward model on preference pairs.
    Eval(RewardEvalArgs),
}

/// Adapters instead of full fine-tuning.
#[derive(Debug, Args)]
pub struct LoraArgs {
    /// Train LoRA adapters of this rank on the frozen model (default: train every weight).
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// Scale numerator: the update is multiplied by alpha / rank (default: 2 x rank).
    #[arg(long, requires = "lora_rank")]
    pub lora_alpha: Option<f64>,
    /// Projections that get adapters: q, k, v, o, mlp, head.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,mlp")]
    pub lora_targets: Vec<String>,
}

/// Preference pairs to read.
#[derive(Debug, Args)]
pub struct PairsArgs {
    /// Preference pairs, TRL JSON lines {"prompt", "chosen", "rejected"[, "margin"]} (.gz too):
    /// strings, or lists of {"role", "content"} messages rendered with the model's chat
    /// template ("prompt" may then be left out: the messages both replies open with).
    #[arg(long)]
    pub data: PathBuf,
    /// Skip malformed lines (reported with their line numbers) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
}

/// `reward train`
#[derive(Debug, Args)]
pub struct RewardTrainArgs {
    /// The base model (Arcane or Hugging Face directory, or Hub model ORG/NAME[@REVISION]).
    #[arg(long)]
    pub model: PathBuf,
    /// Training pairs.
    #[command(flatten)]
    pub pairs: PairsArgs,
    /// Held-out pairs, measured during and after training.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The reward model directory to write (reward.json + model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps (default: --epochs passes over the pairs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Passes over the pairs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Peak learning rate (cosine decay to 10%).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Pairs per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Subtract each pair's "margin" inside the loss.
    #[arg(long)]
    pub margin: bool,
    /// Reward-centring coefficient (TRL's center_rewards_coefficient; 0.01 is common).
    #[arg(long, default_value_t = 0.0)]
    pub center_rewards: f64,
    /// Steps between held-out evaluations (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// LoRA instead of full fine-tuning.
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Seed of the head's initialisation and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object with the held-out figures at the end.
    #[arg(long)]
    pub json: bool,
}

/// `reward eval`
#[derive(Debug, Args)]
pub struct RewardEvalArgs {
    /// A reward model directory (from `reward train`).
    #[arg(long)]
    pub model: PathBuf,
    /// The pairs to rank.
    #[command(flatten)]
    pub pairs: PairsArgs,
    /// Subtract each pair's "margin" in the reported loss.
    #[arg(long)]
    pub margin: bool,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Print one JSON object {"accuracy", "n", "margin_mean", "loss"}.
    #[arg(long)]
    pub json: bool,
}

/// `dpo`
#[derive(Debug, Args)]
pub struct DpoArgs {
    /// The model to start from (a folder or a Hub model ORG/NAME[@REVISION]); it is also the
    /// reference.
    #[arg(long)]
    pub model: PathBuf,
    /// Training pairs.
    #[command(flatten)]
    pub pairs: PairsArgs,
    /// Held-out pairs, measured during and after training.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The run folder: the adapter (with --lora-rank) or the model, metrics.jsonl, align.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps (default: --epochs passes over the pairs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Passes over the pairs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// β, the strength of the implicit KL constraint.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// The loss: sigmoid (the paper's), ipo or hinge.
    #[arg(long, default_value = "sigmoid")]
    pub loss: String,
    /// Label smoothing of the sigmoid loss (conservative DPO).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Peak learning rate (cosine decay to 10%; LoRA usually wants about 10x more).
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Pairs per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Steps between held-out evaluations (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// LoRA instead of full fine-tuning.
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Seed of the adapters' initialisation and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object with the held-out figures at the end.
    #[arg(long)]
    pub json: bool,
}

/// `ppo` and `rloo`
#[derive(Debug, Args)]
pub struct RlArgs {
    /// The policy to start from (a folder or a Hub model ORG/NAME[@REVISION]); it is also the
    /// reference.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompts, TRL JSON lines {"prompt": "..."} or {"prompt": [messages]} (rendered with the
    /// model's chat template and its generation prompt) (.gz too).
    #[arg(long)]
    pub prompts: PathBuf,
    /// The reward: a reward model directory, `lexicon` (built-in VADER) or `lexicon:FILE`.
    #[arg(long)]
    pub reward: String,
    /// The run folder: the adapter (with --lora-rank) or the model, metrics.jsonl, align.json.
    #[arg(long)]
    pub out: PathBuf,
    /// ppo (value head, GAE) or rloo (k samples per prompt, leave-one-out baseline).
    #[arg(long)]
    pub algo: Option<String>,
    /// Iterations (each samples --rollouts responses and learns from them).
    #[arg(long, default_value_t = 40)]
    pub max_steps: usize,
    /// Responses per iteration.
    #[arg(long, default_value_t = 32)]
    pub rollouts: usize,
    /// Responses per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub minibatch: usize,
    /// Passes over each iteration's responses (default: 4 for PPO, 1 for RLOO).
    #[arg(long)]
    pub ppo_epochs: Option<usize>,
    /// Tokens per response.
    #[arg(long, default_value_t = 16)]
    pub response_tokens: usize,
    /// Plain-text prompts are cut to at most this many tokens (chat prompts never are).
    #[arg(long, default_value_t = 8)]
    pub max_prompt_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Initial KL coefficient β (default: 0.2 for PPO, 0.05 for RLOO).
    #[arg(long)]
    pub kl_coef: Option<f64>,
    /// Target KL per sequence in nats for the adaptive controller; 0 keeps β fixed.
    #[arg(long, default_value_t = 6.0)]
    pub kl_target: f64,
    /// Horizon of the adaptive KL controller, in episodes.
    #[arg(long, default_value_t = 1000.0)]
    pub kl_horizon: f64,
    /// RLOO: samples per prompt.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Learning rate (constant).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Do not normalise scores to mean 0, std 1 under the reference before training.
    #[arg(long)]
    pub no_reward_norm: bool,
    /// Held-out prompts: reward and KL before and after training.
    #[arg(long)]
    pub eval_prompts: Option<PathBuf>,
    /// Samples for that evaluation.
    #[arg(long, default_value_t = 128)]
    pub eval_samples: usize,
    /// LoRA instead of full fine-tuning.
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Seed of prompts, samples and minibatch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip malformed prompt lines (reported with their line numbers) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print one JSON object with the last iteration's figures (and the evaluation) at the end.
    #[arg(long)]
    pub json: bool,
}

/// `eval reward`
#[derive(Debug, Args)]
pub struct EvalRewardArgs {
    /// The policy's model directory or Hub model ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter (a `ppo`, `rloo`, `dpo` or `finetune` run) to attach to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The reference for the KL (default: --model without the adapter).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Prompts, TRL JSON lines {"prompt": "..."} or {"prompt": [messages]}.
    #[arg(long)]
    pub prompts: PathBuf,
    /// The reward: a reward model directory, `lexicon` (built-in VADER) or `lexicon:FILE`.
    #[arg(long)]
    pub reward: String,
    /// Responses to sample (prompts are taken in file order, cycling).
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    /// Seed of the samples (the same seed draws the same random streams for any policy).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tokens per response.
    #[arg(long, default_value_t = 16)]
    pub response_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Plain-text prompts are cut to at most this many tokens (chat prompts never are).
    #[arg(long, default_value_t = 8)]
    pub max_prompt_tokens: usize,
    /// Responses per sampling batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Write every sample as a JSON line {"prompt", "response", "reward", "kl", "ended"}.
    #[arg(long)]
    pub write_samples: Option<PathBuf>,
    /// Skip malformed prompt lines instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print one JSON object {"reward_mean", "reward_std", "kl_mean", "ended", "n"}.
    #[arg(long)]
    pub json: bool,
}
