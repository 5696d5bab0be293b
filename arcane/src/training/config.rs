//! The training configuration: model, batch arithmetic, optimizer, schedule, evaluation and
//! checkpointing, with build-nanogpt's GPT-2 recipe as presets. A run saves the resolved config
//! as `config.json` beside its checkpoints.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};
use crate::model::{ModelConfig, Precision};

/// AdamW with two parameter groups (decay on weight matrices, none on biases and norm gains),
/// every hyper-parameter explicit: Burn's defaults differ from PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached at the end of warmup.
    pub max_lr: f64,
    /// Final learning rate as a fraction of `max_lr` (build-nanogpt: 10%).
    pub min_lr_ratio: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂ (0.95, as GPT-3; PyTorch's default is 0.999).
    pub beta2: f64,
    /// AdamW ε (1e-8, PyTorch's default; Burn's is 1e-5).
    pub epsilon: f64,
    /// Decoupled weight decay of the decay group (Loshchilov & Hutter 2019).
    pub weight_decay: f64,
    /// Whether the embedding tables decay too (GPT-2/nanoGPT: yes, every 2-D tensor decays).
    pub decay_embeddings: bool,
    /// Clip the global gradient norm over all parameters to this value (PyTorch's
    /// `clip_grad_norm_`); 0 disables clipping.
    pub grad_clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            max_lr: 6e-4,
            min_lr_ratio: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.1,
            decay_embeddings: true,
            grad_clip: 1.0,
        }
    }
}

/// Shape of the learning-rate schedule after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Cosine decay from `max_lr` to the floor at `max_steps` (nanoGPT's `get_lr`).
    Cosine,
    /// Warmup-stable-decay (Hu et al. 2024, MiniCPM): constant `max_lr`, then a linear decay
    /// over the last `decay_fraction` of the steps that reaches the floor at the last step.
    Wsd,
}

/// The learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cosine or warmup-stable-decay.
    pub kind: ScheduleKind,
    /// Steps of linear warmup from `max_lr / warmup_steps` to `max_lr`.
    pub warmup_steps: usize,
    /// WSD only: fraction of the schedule's steps spent decaying.
    pub decay_fraction: f64,
    /// Steps the schedule spans (`None`: `max_steps`). After them the rate stays at the floor
    /// (`min_lr_ratio · max_lr`). A run extended past its end (`train --resume RUN
    /// --extend-steps N`) keeps its original length here, so its schedule never changes.
    pub horizon: Option<usize>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Cosine,
            warmup_steps: 715,
            decay_fraction: 0.2,
            horizon: None,
        }
    }
}

/// HellaSwag accuracy during training (build-nanogpt measures it every 250 steps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HellaswagEval {
    /// The HellaSwag validation file (JSON lines, plain or .gz).
    pub data: std::path::PathBuf,
    /// Steps between evaluations (independent of `eval_every`).
    pub every: usize,
    /// Score only the first N examples (`None`: all 10,042).
    pub limit: Option<usize>,
    /// Examples per forward pass (1 is fastest on the CPU; raise it on GPUs).
    pub batch: usize,
}

impl Default for HellaswagEval {
    fn default() -> Self {
        Self {
            data: "hellaswag_val.jsonl.gz".into(),
            every: 250,
            limit: None,
            batch: 1,
        }
    }
}

/// The lm-eval task suite (`eval suite`) during training, on the bundled data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSuiteEval {
    /// Task names (`piqa`, `arc_easy`, `arc_challenge`, `winogrande`, `hellaswag`, `lambada`,
    /// `mmlu`); empty: all.
    pub tasks: Vec<String>,
    /// Steps between evaluations (independent of `eval_every`).
    pub every: usize,
    /// Score only the first N documents of each task (`None`: all).
    pub limit: Option<usize>,
    /// Distinct model inputs per forward pass.
    pub batch: usize,
}

impl Default for EvalSuiteEval {
    fn default() -> Self {
        Self {
            tasks: Vec::new(),
            every: 250,
            limit: Some(500),
            batch: 1,
        }
    }
}

/// Fine-tuning with LoRA: the base model to start from and the adapters to train on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The base model directory (Arcane or Hugging Face); its weights stay frozen.
    pub base: std::path::PathBuf,
    /// The adapters.
    pub lora: crate::lora::LoraConfig,
    /// When the base came from the Hub: its repository, the revision asked for and the
    /// commit it resolved to (`base` is then that commit's snapshot in the cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<crate::hub::HubSource>,
}

impl FinetuneConfig {
    /// The base as people (and `--model`) name it: `ORG/NAME@COMMIT` for a Hub model, which
    /// pins exactly the weights trained on, else the folder.
    pub fn base_label(&self) -> String {
        match &self.hub {
            Some(hub) => format!("{}@{}", hub.repo, hub.commit),
            None => self.base.display().to_string(),
        }
    }
}

/// Everything a training run needs besides data and an output folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// The model to train.
    pub model: ModelConfig,
    /// Seed of initialisation, data order and dropout.
    pub seed: u64,
    /// Tokens per sequence `T` (`None`: the model's context).
    pub seq_len: Option<usize>,
    /// Sequences per forward pass on each device `B`.
    pub micro_batch: usize,
    /// Tokens per optimizer step (2^19 = 524288 in GPT-2's recipe). Must equal
    /// `micro_batch x seq_len x accumulation x devices` for a whole accumulation count.
    pub tokens_per_step: usize,
    /// The run stops after this many optimizer steps.
    pub max_steps: usize,
    /// AdamW and gradient clipping.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Steps between validation losses and samples (also one "epoch" of the dashboard).
    pub eval_every: usize,
    /// Validation tokens per evaluation.
    pub eval_tokens: usize,
    /// Steps between checkpoints (independent of `eval_every`). The last step always
    /// checkpoints, and so does a run stopped by SIGINT / SIGTERM or the dashboard.
    pub checkpoint_every: usize,
    /// How many checkpoints to keep (the newest).
    pub keep_checkpoints: usize,
    /// Prompt of the text sample printed at each evaluation.
    pub sample_prompt: String,
    /// Tokens in each sample.
    pub sample_tokens: usize,
    /// Steps between plain log lines when stdout is not a terminal.
    pub log_every: usize,
    /// Recompute activations in the backward pass to save memory: each block keeps only its
    /// input and is run again in the backward pass (see [`crate::kernels::recompute`]), on
    /// every backend, with dropout replayed; costs about one more forward pass.
    pub activation_checkpointing: bool,
    /// Compute precision: `bf16` (bf16 activations and matmuls, f32 master weights and AdamW
    /// moments), `f32`, or `auto` (the CLI picks bf16 on CUDA, f32 elsewhere).
    pub precision: Precision,
    /// Peak FLOP/s of one device for MFU; `None`: looked up from the device name, else unknown.
    pub peak_flops: Option<f64>,
    /// HellaSwag during training (`None`: off).
    pub hellaswag: Option<HellaswagEval>,
    /// The lm-eval task suite during training (`None`: off).
    pub eval_suite: Option<EvalSuiteEval>,
    /// LoRA fine-tuning of a base model instead of pre-training from scratch.
    pub finetune: Option<FinetuneConfig>,
    /// Full fine-tuning: every parameter starts from this model's weights and trains (`None`:
    /// a fresh model, or `finetune`'s frozen base).
    pub init: Option<std::path::PathBuf>,
    /// Supervised fine-tuning on chat or prompt/completion examples with a masked loss,
    /// instead of token windows (see [`crate::sft`]).
    pub sft: Option<SftRunConfig>,
}

/// What a supervised fine-tuning run trains on (recorded in its config, so that a resume on
/// other data or with another template is refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftRunConfig {
    /// The training file, as given.
    pub data: std::path::PathBuf,
    /// The held-out file (`--eval-data`), if one was given instead of a split.
    pub eval_data: Option<std::path::PathBuf>,
    /// Its format.
    pub format: crate::sft::SftFormat,
    /// Longest example in tokens (longer ones keep their start).
    pub max_length: usize,
    /// Where the chat template came from (conversational data).
    pub template: Option<String>,
    /// The tokenizer the examples were encoded with (`gpt2-chatml` when Arcane's ChatML
    /// tokens were added).
    pub tokenizer: String,
    /// Pack several examples into each row (Best-Fit Decreasing, block-diagonal attention,
    /// positions restarting per example); off by default, as TRL.
    #[serde(default)]
    pub packing: bool,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self::tiny_cpu()
    }
}

impl burn::config::Config for TrainingConfig {}

/// Names accepted by [`TrainingConfig::preset`].
pub const TRAINING_PRESETS: [&str; 5] = [
    "tiny-cpu",
    "gpt2-124m",
    "arcane-124m",
    "arcane-355m",
    "arcane-1.3b",
];

impl TrainingConfig {
    /// The README's default run: an 8-layer Arcane model (8M parameters, most of them the
    /// embedding) on the bundled corpus, about 6 minutes on two CPU cores.
    pub fn tiny_cpu() -> Self {
        let model = ModelConfig {
            max_seq_len: 128,
            d_model: 128,
            n_layers: 8,
            n_heads: 4,
            mlp_hidden: Some(344),
            ..ModelConfig::arcane_124m()
        };
        // Tuned on the bundled corpus (~300k tokens) with the fused CPU kernels (~3,000
        // tokens/s on two cores): small steps of 1k tokens learn more per token than 2k ones;
        // 950 steps is about three passes. In the same 6 minutes 8 layers of width 128 (val
        // loss 5.50) beat 4 layers for 1,100 steps (5.55) and 6 layers of width 192 for 650
        // (5.57); the earlier preset (4 layers, 300 steps, without the kernels) reached 6.01.
        Self {
            model,
            seed: 1337,
            seq_len: None,
            micro_batch: 8,
            tokens_per_step: 8 * 128,
            max_steps: 950,
            optimizer: OptimizerConfig {
                max_lr: 4e-3,
                ..OptimizerConfig::default()
            },
            schedule: ScheduleConfig {
                warmup_steps: 40,
                ..ScheduleConfig::default()
            },
            eval_every: 100,
            eval_tokens: 16 * 1024,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            sample_prompt: "The whale".into(),
            sample_tokens: 48,
            log_every: 10,
            activation_checkpointing: false,
            precision: Precision::Auto,
            peak_flops: None,
            hellaswag: None,
            eval_suite: None,
            finetune: None,
            init: None,
            sft: None,
        }
    }

    /// build-nanogpt's GPT-2 124M recipe: 19,073 steps of 2^19 tokens (10B tokens), T = 1024,
    /// warmup 715, max LR 6e-4, cosine to 10%.
    pub fn gpt2_124m() -> Self {
        Self {
            model: ModelConfig {
                vocab_size: 50304,
                ..ModelConfig::gpt2_124m()
            },
            micro_batch: 64,
            tokens_per_step: 1 << 19,
            max_steps: 19_073,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            eval_every: 250,
            eval_tokens: 20 * 64 * 1024,
            checkpoint_every: 5000,
            keep_checkpoints: 3,
            sample_prompt: "Hello, I'm a language model,".into(),
            sample_tokens: 32,
            log_every: 1,
            ..Self::tiny_cpu()
        }
    }

    /// The GPT-2 recipe on the Arcane 124M architecture.
    pub fn arcane_124m() -> Self {
        Self {
            model: ModelConfig::arcane_124m(),
            ..Self::gpt2_124m()
        }
    }

    /// Arcane 355M: the same recipe with GPT-3 medium's learning rate (3e-4).
    pub fn arcane_355m() -> Self {
        Self {
            model: ModelConfig::arcane_355m(),
            micro_batch: 32,
            optimizer: OptimizerConfig {
                max_lr: 3e-4,
                ..OptimizerConfig::default()
            },
            ..Self::gpt2_124m()
        }
    }

    /// Arcane 1.3B: twice the batch (2^20 tokens), half the steps (9,536), GPT-3 XL's 2e-4.
    pub fn arcane_1_3b() -> Self {
        Self {
            model: ModelConfig::arcane_1_3b(),
            micro_batch: 16,
            tokens_per_step: 1 << 20,
            max_steps: 9_536,
            optimizer: OptimizerConfig {
                max_lr: 2e-4,
                ..OptimizerConfig::default()
            },
            schedule: ScheduleConfig {
                warmup_steps: 358,
                ..ScheduleConfig::default()
            },
            activation_checkpointing: true,
            ..Self::gpt2_124m()
        }
    }

    /// Looks up a preset by name (see [`TRAINING_PRESETS`]).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny-cpu" => Some(Self::tiny_cpu()),
            "gpt2-124m" => Some(Self::gpt2_124m()),
            "arcane-124m" => Some(Self::arcane_124m()),
            "arcane-355m" => Some(Self::arcane_355m()),
            "arcane-1.3b" => Some(Self::arcane_1_3b()),
            _ => None,
        }
    }

    /// Reads a training config file and validates it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| {
            ArcaneError::format(
                path,
                format!("not a valid training config: {e} (see configs/)"),
            )
        })?;
        config
            .validate(1)
            .map_err(|e| ArcaneError::format(path, e.to_string()))?;
        Ok(config)
    }

    /// Steps the learning-rate schedule spans.
    pub fn schedule_horizon(&self) -> usize {
        self.schedule.horizon.unwrap_or(self.max_steps)
    }

    /// This config with `steps` more optimizer steps. The schedule keeps its length: the new
    /// steps train at the schedule's final rate (`min_lr_ratio · max_lr`, the floor of the
    /// cosine or WSD decay), so nothing the run has done is re-planned.
    pub fn extended(&self, steps: usize) -> Self {
        let mut config = self.clone();
        config.schedule.horizon = Some(self.schedule_horizon());
        config.max_steps = self.max_steps + steps;
        config
    }

    /// The sequence length `T`.
    pub fn seq_len(&self) -> usize {
        self.seq_len.unwrap_or(self.model.max_seq_len)
    }

    /// Micro-batches per optimizer step on each of `devices` devices.
    pub fn accumulation(&self, devices: usize) -> Result<usize> {
        let per_pass = self.micro_batch * self.seq_len() * devices;
        if per_pass == 0 || self.tokens_per_step % per_pass != 0 || self.tokens_per_step < per_pass
        {
            return Err(ArcaneError::InvalidConfig(format!(
                "tokens_per_step ({}) must be a whole multiple of micro_batch x seq_len x devices \
                 ({} x {} x {devices} = {per_pass}); change tokens_per_step to a multiple of {per_pass} \
                 or adjust micro_batch",
                self.tokens_per_step,
                self.micro_batch,
                self.seq_len()
            )));
        }
        Ok(self.tokens_per_step / per_pass)
    }

    /// Checks the whole configuration for `devices` devices.
    pub fn validate(&self, devices: usize) -> Result<()> {
        self.model.validate()?;
        let fail = |msg: String| Err(ArcaneError::InvalidConfig(msg));
        if self.seq_len() == 0 || self.seq_len() > self.model.max_seq_len {
            return fail(format!(
                "seq_len must be between 1 and the model's context ({})",
                self.model.max_seq_len
            ));
        }
        self.accumulation(devices)?;
        for (name, value) in [
            ("max_steps", self.max_steps),
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
            ("keep_checkpoints", self.keep_checkpoints),
            ("log_every", self.log_every),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        let o = &self.optimizer;
        if !(o.max_lr > 0.0 && o.max_lr.is_finite()) || !(0.0..=1.0).contains(&o.min_lr_ratio) {
            return fail("max_lr must be positive and min_lr_ratio in [0, 1]".into());
        }
        if !(0.0..1.0).contains(&o.beta1)
            || !(0.0..1.0).contains(&o.beta2)
            || !(o.epsilon > 0.0)
            || o.weight_decay < 0.0
            || o.grad_clip < 0.0
        {
            return fail(
                "AdamW needs betas in [0, 1), epsilon > 0, weight_decay >= 0 and grad_clip >= 0"
                    .into(),
            );
        }
        if let Some(f) = &self.finetune {
            f.lora.validate(&self.model)?;
            if self.init.is_some() {
                return fail("finetune (LoRA on a frozen base) and init (full fine-tuning) exclude each other".into());
            }
        }
        if let Some(h) = &self.hellaswag {
            if h.every == 0 || h.batch == 0 || h.limit == Some(0) {
                return fail(
                    "hellaswag.every, hellaswag.batch and hellaswag.limit must be at least 1"
                        .into(),
                );
            }
        }
        if let Some(e) = &self.eval_suite {
            if e.every == 0 || e.batch == 0 || e.limit == Some(0) {
                return fail(
                    "eval_suite.every, eval_suite.batch and eval_suite.limit must be at least 1"
                        .into(),
                );
            }
            for task in &e.tasks {
                crate::eval::tasks::Task::parse(task)?;
            }
        }
        if self.schedule.horizon == Some(0) {
            return fail("schedule.horizon must be at least 1 (or absent: max_steps)".into());
        }
        if !(0.0..=1.0).contains(&self.schedule.decay_fraction) {
            return fail(format!(
                "schedule.decay_fraction must be in [0, 1], got {}",
                self.schedule.decay_fraction
            ));
        }
        Ok(())
    }
}
