//! The command line, as clap types. Parsing only; no work happens here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::BackendKind;
use crate::cli_align::{DpoArgs, EvalRewardArgs, RewardCommand, RlArgs};
use crate::cli_eval::{EvalSuiteArgs, EvalTaskArgs};
use crate::precision_args::PrecisionArgs;
use crate::sampling_args::SamplingArgs;

/// Train, sample, evaluate and benchmark GPT-2-class language models on Burn.
#[derive(Debug, Parser)]
#[command(name = "arcane-cli", version, about)]
pub struct Cli {
    /// Compute backend: `cpu` (default), `wgpu` or `cuda` (needs a build with that feature).
    #[arg(long, global = true, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Folder of the GPU backends' compiled-kernel and autotune caches (default:
    /// $ARCANE_KERNEL_CACHE, else ~/.cache/arcane/kernels); a cubecl.toml takes precedence.
    #[arg(long, global = true, value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tokenize text files into training and validation shards.
    Prepare(PrepareArgs),
    /// Pre-train a model (with no arguments: tiny-cpu on the bundled corpus, then a sample).
    Train(TrainArgs),
    /// Fine-tune a model with LoRA adapters (base weights frozen).
    Finetune(FinetuneArgs),
    /// Supervised fine-tuning on TRL's formats (text, prompt/completion, conversations);
    /// loss on completions and assistant turns only; LoRA by default.
    Sft(crate::cli_sft::SftArgs),
    /// LoRA adapter tools.
    #[command(subcommand)]
    Lora(LoraCommand),
    /// Draw the loss curves of one or more runs into one picture.
    Plot(PlotArgs),
    /// Show a config's parameters, FLOPs per token and memory needs.
    Info(InfoArgs),
    /// Continue a prompt with a model, streaming the text.
    Generate(GenerateArgs),
    /// Chat with a model through its chat template (interactive, or one --messages file).
    Chat(ChatArgs),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Measure throughput (JSON lines on stdout).
    Bench(BenchArgs),
    /// Convert a model directory to the Arcane or Hugging Face format.
    Convert(ConvertArgs),
    /// Reward models: train one on preference pairs, or measure one.
    #[command(subcommand)]
    Reward(RewardCommand),
    /// Direct Preference Optimization on preference pairs.
    Dpo(DpoArgs),
    /// RLHF with PPO (or RLOO with --algo rloo) against a reward model or the lexicon.
    Ppo(RlArgs),
    /// RLOO (REINFORCE with a leave-one-out baseline): `ppo --algo rloo`.
    Rloo(RlArgs),
}

/// `prepare`
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Files or folders of .txt, .jsonl (a "text" field per line) or their .gz.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output folder for the shards and manifest.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Tokens in the validation split (default: 5% of the corpus, at most 10M).
    #[arg(long, allow_negative_numbers = true)]
    pub val_tokens: Option<usize>,
    /// Tokens per shard file.
    #[arg(long, allow_negative_numbers = true, default_value_t = 100_000_000)]
    pub shard_tokens: usize,
    /// Tokenize with this model's tokenizer (its tokenizer.json) instead of GPT-2's (a folder
    /// or a Hub model ORG/NAME[@REVISION]).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// `train`
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A training preset (tiny-cpu, gpt2-124m, arcane-124m, arcane-355m, arcane-1.3b) or a
    /// config file (see configs/).
    #[arg(long)]
    pub config: Option<String>,
    /// Prepared data (from `prepare`); default: the bundled corpus, prepared on first use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The run folder (default: runs/CONFIG, or runs/CONFIG-2, ... if taken).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Override max_steps (a new run only: on --resume it would move the learning-rate
    /// schedule; see --extend-steps).
    #[arg(long, allow_negative_numbers = true)]
    pub max_steps: Option<usize>,
    /// With --resume: train N steps past the run's max_steps (also on a finished run). The
    /// schedule keeps its length: the extra steps train at its final rate (min_lr_ratio x
    /// max_lr), so no step already taken is re-planned.
    #[arg(long, allow_negative_numbers = true, requires = "resume")]
    pub extend_steps: Option<usize>,
    /// Override checkpoint_every (independent of eval_every; may change on --resume).
    #[arg(long, allow_negative_numbers = true)]
    pub checkpoint_every: Option<usize>,
    /// Override eval_every (may change on --resume).
    #[arg(long, allow_negative_numbers = true)]
    pub eval_every: Option<usize>,
    /// Override log_every: steps between plain log lines (may change on --resume).
    #[arg(long, allow_negative_numbers = true)]
    pub log_every: Option<usize>,
    /// Override the micro-batch size (tokens_per_step is kept).
    #[arg(long, allow_negative_numbers = true)]
    pub micro_batch: Option<usize>,
    /// Override tokens_per_step.
    #[arg(long, allow_negative_numbers = true)]
    pub tokens_per_step: Option<usize>,
    /// Recompute activations in the backward pass to save memory: each transformer block
    /// keeps only its input and runs again in the backward pass (about one more forward).
    #[arg(long)]
    pub activation_checkpointing: bool,
    /// Compute precision: bf16 (bf16 activations and matmuls, f32 master weights and AdamW
    /// moments), f32, or auto (bf16 on CUDA, f32 elsewhere; the default).
    #[arg(long, value_name = "auto|f32|bf16")]
    pub precision: Option<arcane::model::Precision>,
    /// Peak TFLOP/s of one device for MFU (default: looked up for known GPUs).
    #[arg(long, allow_negative_numbers = true)]
    pub peak_tflops: Option<f64>,
    /// Device indices for data-parallel training, e.g. 0,1,2,3 (GPU backends). A `cuda-ddp`
    /// build trains them with NCCL data parallel (one device is a valid run); other builds
    /// gather the gradients on the first device.
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',')]
    pub devices: Option<Vec<usize>>,
    /// Plain log lines even on a terminal (no dashboard).
    #[arg(long)]
    pub no_dashboard: bool,
    /// Measure HellaSwag on this file during training (see --hellaswag-every).
    #[arg(long)]
    pub hellaswag: Option<PathBuf>,
    /// Steps between HellaSwag evaluations (independent of eval_every; default: eval_every).
    #[arg(long, allow_negative_numbers = true, requires = "hellaswag")]
    pub hellaswag_every: Option<usize>,
    /// Score the first N HellaSwag examples (default: all).
    #[arg(long, allow_negative_numbers = true, requires = "hellaswag")]
    pub hellaswag_limit: Option<usize>,
    /// The lm-eval task suite during training (--eval-suite TASKS).
    #[command(flatten)]
    pub suite: crate::cli_eval::TrainSuiteArgs,
    /// Print the resolved training config as JSON and exit (a starting point for your own).
    #[arg(long)]
    pub print_config: bool,
}

/// `finetune`
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The base model: an Arcane or Hugging Face directory, or a Hub model ORG/NAME[@REVISION]
    /// (its commit is recorded in the run's config). Its weights stay frozen.
    #[arg(long, required_unless_present = "resume")]
    pub model: Option<PathBuf>,
    /// Prepared data (a `prepare` folder) or a text file (.txt, .jsonl, .gz), prepared into
    /// RUN_DIR/data.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Rank of the adapters [default: 8].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_rank: Option<usize>,
    /// Scale numerator: the update is multiplied by alpha / rank [default: 2 x rank].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_alpha: Option<f64>,
    /// Projections that get adapters: q, k, v, o, mlp, head [default: q,k].
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Option<Vec<String>>,
    /// Dropout on the adapters' input [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_dropout: Option<f64>,
    /// The run folder (default: runs/finetune, or runs/finetune-2, ... if taken).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue a fine-tune run from its last checkpoint (from step 0 if it has none). The
    /// flags that set up a run cannot change then.
    #[arg(long, conflicts_with_all = ["model", "out"])]
    pub resume: Option<PathBuf>,
    /// With --resume: train N steps past the run's end, at the schedule's final rate.
    #[arg(long, allow_negative_numbers = true, requires = "resume")]
    pub extend_steps: Option<usize>,
    /// Optimizer steps [default: 200].
    #[arg(long, allow_negative_numbers = true)]
    pub max_steps: Option<usize>,
    /// Peak learning rate [default: 1e-3].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Sequences per step [default: 8].
    #[arg(long, allow_negative_numbers = true)]
    pub micro_batch: Option<usize>,
    /// Tokens per sequence (default: the model's context, at most 512, and shorter for a
    /// training text too small for one such window).
    #[arg(long, allow_negative_numbers = true)]
    pub seq_len: Option<usize>,
    /// Steps between validation losses (and checkpoints) [default: 50].
    #[arg(long, allow_negative_numbers = true)]
    pub eval_every: Option<usize>,
    /// Plain log lines even on a terminal (no dashboard).
    #[arg(long)]
    pub no_dashboard: bool,
}

/// `lora ...`
#[derive(Debug, Subcommand)]
pub enum LoraCommand {
    /// Fold an adapter into its base model and write a plain model.
    Merge(LoraMergeArgs),
}

/// `lora merge`
#[derive(Debug, Args)]
pub struct LoraMergeArgs {
    /// The base model the adapter was trained on (a folder or a Hub model ORG/NAME[@REVISION]).
    #[arg(long)]
    pub model: PathBuf,
    /// The adapter (a fine-tune run folder).
    #[arg(long)]
    pub adapter: PathBuf,
    /// Where to write the merged model.
    #[arg(long)]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ModelFormat::Arcane)]
    pub format: ModelFormat,
}

/// `plot`
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run folders.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output path without extension (default: RUN/loss for one run, loss-comparison otherwise).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A preset (tiny, gpt2-124m, arcane-124m, arcane-355m, arcane-1.3b) or a config file.
    #[arg(long, default_value = "gpt2-124m")]
    pub config: String,
    /// Sequence length for FLOPs and memory (default: the model's context).
    #[arg(long, allow_negative_numbers = true)]
    pub seq_len: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// An Arcane model directory, a Hugging Face directory (config.json + model.safetensors),
    /// or a Hub model ORG/NAME[@REVISION] (downloaded into the Hugging Face cache; a local
    /// path of that name wins).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter (a fine-tune run folder) to attach to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The text to continue.
    #[arg(long, allow_hyphen_values = true)]
    pub prompt: String,
    /// Upper bound on generated tokens.
    #[arg(long, allow_negative_numbers = true, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling flags.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// How the weights are stored.
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Print one JSON object {"prompt_ids", "ids", "text"} instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// `chat`
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// An Arcane model directory or a Hugging Face directory (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter (a fine-tune run folder) to attach to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A system message that opens the conversation.
    #[arg(long, allow_hyphen_values = true)]
    pub system: Option<String>,
    /// Answer the conversation in this JSON file (a list of {"role", "content"}) once and exit;
    /// one that ends with an assistant message is continued from its last word.
    #[arg(long, value_name = "FILE.json")]
    pub messages: Option<PathBuf>,
    /// A chat template to use instead of the model's: a .jinja file, or a .json file with a
    /// "chat_template" entry (chat_template.json, tokenizer_config.json).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Print the rendered prompt (with the assistant's header, or up to the end of a final
    /// assistant message) instead of generating.
    #[arg(long, requires = "messages")]
    pub print_prompt: bool,
    /// JSON output: {"text", "ids"} with --print-prompt, else {"reply", "ids"} per reply.
    #[arg(long)]
    pub json: bool,
    /// Upper bound on the tokens of one reply.
    #[arg(long, allow_negative_numbers = true, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling flags.
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `eval ...`
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Mean next-token loss (nats/token) and perplexity of a text file or of prepared data.
    Loss(EvalLossArgs),
    /// HellaSwag accuracy (acc by summed loss, acc_norm by mean loss per token).
    Hellaswag(EvalHellaswagArgs),
    /// Reward of a policy's samples on prompts, and their KL to the model without the adapter.
    Reward(EvalRewardArgs),
    /// PIQA (validation) as lm-evaluation-harness scores it: acc, acc_norm.
    Piqa(EvalTaskArgs),
    /// ARC-Easy (test) as lm-evaluation-harness scores it: acc, acc_norm.
    ArcEasy(EvalTaskArgs),
    /// ARC-Challenge (test) as lm-evaluation-harness scores it: acc, acc_norm.
    ArcChallenge(EvalTaskArgs),
    /// WinoGrande (validation, partial scoring) as lm-evaluation-harness scores it: acc.
    Winogrande(EvalTaskArgs),
    /// LAMBADA (OpenAI's test set) as lm-evaluation-harness scores it: acc, perplexity.
    Lambada(EvalTaskArgs),
    /// MMLU (test, zero-shot) as lm-evaluation-harness scores it: acc, per subject.
    Mmlu(EvalTaskArgs),
    /// Every lm-eval task in one run: a table, one JSON document, a CORE-subset average.
    Suite(EvalSuiteArgs),
}

/// `eval hellaswag`
#[derive(Debug, Args)]
pub struct EvalHellaswagArgs {
    /// An Arcane model directory, a Hugging Face directory, or a Hub model ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter (a fine-tune run folder) to attach to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// HellaSwag validation JSON lines (plain or .gz).
    #[arg(long)]
    pub data: PathBuf,
    /// Score only the first N examples.
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Examples per forward pass (4 rows each). 1 is fastest on the CPU (no padding); raise it
    /// on GPUs.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub batch: usize,
    /// Write one JSON line per example (ind, label, pred, pred_norm, sum_losses, mean_losses).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Skip malformed lines (reported with their line numbers) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print one JSON object {"n", "acc", "acc_norm", "acc_stderr", "acc_norm_stderr"}.
    #[arg(long)]
    pub json: bool,
    /// `nanogpt`: build-nanogpt's scoring (raw `ctx`, acc_norm by mean loss per token);
    /// `lm-eval`: lm-evaluation-harness's (preprocessed text, acc_norm per character).
    #[arg(long, value_enum, default_value_t = HellaswagScoring::Nanogpt)]
    pub scoring: HellaswagScoring,
    /// How the weights are stored.
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// How `eval hellaswag` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HellaswagScoring {
    /// build-nanogpt's `hellaswag.py`.
    Nanogpt,
    /// lm-evaluation-harness's `hellaswag` task.
    LmEval,
}

/// `eval loss`
#[derive(Debug, Args)]
pub struct EvalLossArgs {
    /// An Arcane model directory, a Hugging Face directory, or a Hub model ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter (a fine-tune run folder) to attach to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A UTF-8 text file to score.
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub text: Option<PathBuf>,
    /// Prepared data (from `prepare`): score its validation split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// With --data: score at most this many tokens (from the start of the split).
    #[arg(long, allow_negative_numbers = true, requires = "data")]
    pub max_tokens: Option<usize>,
    /// Tokens per window (default: the model's context); windows overlap by one token.
    #[arg(long, allow_negative_numbers = true)]
    pub window: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, allow_negative_numbers = true, default_value_t = 4)]
    pub batch: usize,
    /// Print one JSON object {"loss", "perplexity", "tokens"}.
    #[arg(long)]
    pub json: bool,
    /// How the weights are stored.
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// What `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKind {
    /// Full-sequence forward passes.
    Forward,
    /// Batch-1 decoding with the KV cache: a prompt (`--prompt-len`, 32), then new tokens
    /// (`--new-tokens`, 128); tokens/s counts the new tokens only.
    Decode,
    /// Full optimizer steps: forward, backward, global-norm clipping, AdamW.
    Train,
    /// HellaSwag scoring (examples/s) on the bundled sample of examples.
    Hellaswag,
}

/// `bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub kind: BenchKind,
    /// A preset or a config file (random weights).
    #[arg(long, default_value = "gpt2-124m")]
    pub config: String,
    /// Sequences per step (forward and train).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub batch: usize,
    /// Sequence length (forward and train; default: min(context, 1024)).
    #[arg(long, allow_negative_numbers = true)]
    pub seq_len: Option<usize>,
    /// Recompute each block's activations in the backward pass (train only); compare peak
    /// memory and step time with and without.
    #[arg(long)]
    pub activation_checkpointing: bool,
    /// Compute precision (auto: bf16 on CUDA, f32 elsewhere). `train` and `forward`: bf16
    /// activations and products, f32 master weights. `decode` and `hellaswag`: `bf16` stores
    /// the weights in bf16 (half the bytes per token), with f32 activations on the CPU.
    #[arg(long, value_name = "auto|f32|bf16", default_value = "auto")]
    pub precision: arcane::model::Precision,
    /// Timed repeats (optimizer steps for `train`) after the warm-up; the median is reported.
    #[arg(
        long,
        allow_negative_numbers = true,
        visible_alias = "steps",
        default_value_t = 5
    )]
    pub repeats: usize,
    /// Prompt tokens before the timed decoding (decode only; default 32, at most half the
    /// context unless given).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Tokens generated and timed (decode only; default 128, fewer if the context is short).
    #[arg(long)]
    pub new_tokens: Option<usize>,
    /// HellaSwag JSONL (`.gz` read too) to score instead of the bundled sample (hellaswag only),
    /// e.g. `datasets/hellaswag/hellaswag_val.jsonl.gz`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Score the first N examples (hellaswag only; default: the bundled sample's 8 examples
    /// repeated to 32, or the whole `--data` file).
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Add a wall-time breakdown of the median repeat: forward / backward / clipping /
    /// optimizer (train), blocks / head / host (decode). Phases are synchronised, so a GPU
    /// run gets slower with it.
    #[arg(long)]
    pub profile: bool,
}

/// Output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    /// arcane.json + model.safetensors
    Arcane,
    /// Hugging Face config.json + model.safetensors (GPT-2 or Llama)
    Hf,
}

/// `convert`
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model to read: an Arcane or Hugging Face directory, or a Hub model ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the converted model.
    #[arg(long)]
    pub out: PathBuf,
    /// The format to write.
    #[arg(long, value_enum)]
    pub format: ModelFormat,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
