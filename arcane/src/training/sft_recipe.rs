//! The supervised fine-tuning recipe: rows of one of TRL's formats encoded with the base
//! model's tokenizer and chat template, a held-out split, and a [`TrainingConfig`] for the
//! same loop as pre-training with a masked loss.
//!
//! Defaults follow TRL's `SFTConfig` where they fit a CPU: `max_length` 1024 (cut to the
//! model's context), batches of 8, 3 epochs, learning rate 2e-5 for full fine-tuning and
//! 1e-4 with LoRA (TRL's docs advise a rate about ten times higher for adapters than for the
//! whole model). Warmup 5% and cosine decay to 10%, as `finetune`.
//!
//! A GPT-2-vocabulary model without a chat template gets Arcane's ChatML (its two tokens on
//! spare rows of the padded vocabulary, [`crate::chat::enable_chatml`]) for conversations;
//! the run records the tokenizer `gpt2-chatml` and writes the template into the run folder.

use std::path::{Path, PathBuf};

use super::config::{
    FinetuneConfig, OptimizerConfig, ScheduleConfig, SftRunConfig, TrainingConfig,
};
use super::sft_source::{SftSet, SFT_TRAIN_FILE, SFT_VAL_FILE};
use crate::chat::{model_template, ChatTemplate};
use crate::error::{ArcaneError, Result};
use crate::jsonl::BadLine;
use crate::lora::LoraConfig;
use crate::sft::{read_sft_rows, EncodeStats, SftEncoder, SftExample, SftFormat};
use crate::tokenizer::ModelTokenizer;

/// What an SFT run is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct SftRecipe {
    /// The starting model (Arcane or Hugging Face folder); its files are never written.
    pub base: PathBuf,
    /// Adapters to train on the frozen base; `None`: full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Training rows (JSONL).
    pub data: PathBuf,
    /// Held-out rows; `None`: every 20th training row is held out.
    pub eval_data: Option<PathBuf>,
    /// Longest example in tokens (longer ones keep their start).
    pub max_length: usize,
    /// Examples per step.
    pub micro_batch: usize,
    /// Optimizer steps (`None`: `epochs` passes over the training examples).
    pub max_steps: Option<usize>,
    /// Passes over the data when `max_steps` is not given.
    pub epochs: usize,
    /// Peak learning rate (`None`: 2e-5 full, 1e-4 LoRA).
    pub lr: Option<f64>,
    /// Steps between validation losses and checkpoints (`None`: a quarter of the run).
    pub eval_every: Option<usize>,
    /// Skip bad rows (reported) instead of failing on the first.
    pub skip_bad: bool,
    /// Seed of the data order.
    pub seed: u64,
    /// Pack several examples into each row (block-diagonal attention); off by default.
    pub packing: bool,
    /// When the base came from the Hugging Face Hub: the repository, revision and commit it
    /// resolved to, recorded in the run's config (`base` is then that commit's snapshot).
    pub hub: Option<crate::hub::HubSource>,
}

impl SftRecipe {
    /// The recipe's defaults for `base` and `data`, with LoRA of `lora` (`None`: full).
    pub fn new(
        base: impl Into<PathBuf>,
        data: impl Into<PathBuf>,
        lora: Option<LoraConfig>,
    ) -> Self {
        Self {
            base: base.into(),
            lora,
            data: data.into(),
            eval_data: None,
            max_length: 1024,
            micro_batch: 8,
            max_steps: None,
            epochs: 3,
            lr: None,
            eval_every: None,
            skip_bad: false,
            seed: 1337,
            packing: false,
            hub: None,
        }
    }
}

/// What preparing an SFT run found: counts for the user.
#[derive(Clone, Debug, Default)]
pub struct SftPrepared {
    /// The data's format.
    pub format: Option<SftFormat>,
    /// Training and held-out examples.
    pub train: usize,
    /// See `train`.
    pub val: usize,
    /// Truncation and boundary figures of the training file.
    pub stats: EncodeStats,
    /// Lines skipped (`skip_bad`), with the file they are in.
    pub bad: Vec<(PathBuf, BadLine)>,
    /// Notes worth printing (template added, split sizes, cut lengths).
    pub notes: Vec<String>,
}

impl SftRecipe {
    /// Encodes the data into `run_dir/data` (train and held-out examples), writes the chat
    /// template used into `run_dir` (for `chat --adapter`), and returns the run's config.
    pub fn prepare(&self, run_dir: &Path) -> Result<(TrainingConfig, SftPrepared)> {
        let model = crate::checkpoint::load_config(&self.base)?;
        if let Some(lora) = &self.lora {
            lora.validate(&model)?;
        }
        let mut out = SftPrepared::default();
        // Unpacked rows input all tokens but the last; packed rows input every token.
        let context = model.max_seq_len + usize::from(!self.packing);
        let max_length = self.max_length.min(context);
        if max_length < self.max_length {
            out.notes.push(format!(
                "--max-length {} cut to {max_length}, what the model's context holds",
                self.max_length
            ));
        }
        let rows = read_sft_rows(&self.data, self.skip_bad)?;
        out.bad
            .extend(rows.bad.iter().map(|b| (self.data.clone(), b.clone())));
        let (tokenizer, template) = self.tokenizer_and_template(rows.format, &mut out)?;
        let encoder = SftEncoder::new(tokenizer.clone(), template.clone(), max_length);
        let (mut train, stats, bad) = encoder.encode_rows(&rows, self.skip_bad, &self.data)?;
        out.bad
            .extend(bad.into_iter().map(|b| (self.data.clone(), b)));
        out.stats = stats;
        let val = match &self.eval_data {
            Some(path) => {
                let rows = read_sft_rows(path, self.skip_bad)?;
                out.bad
                    .extend(rows.bad.iter().map(|b| (path.clone(), b.clone())));
                let (val, _, bad) = encoder.encode_rows(&rows, self.skip_bad, path)?;
                out.bad.extend(bad.into_iter().map(|b| (path.clone(), b)));
                val
            }
            None => held_out(&mut train, &mut out.notes),
        };
        if train.is_empty() || val.is_empty() {
            return Err(ArcaneError::InvalidInput(format!(
                "{} leaves no example to train or to evaluate on (every row was bad, or no token of it \
                 carries loss within --max-length {max_length})",
                self.data.display()
            )));
        }
        let data_dir = run_dir.join("data");
        SftSet::save(&data_dir, SFT_TRAIN_FILE, &train)?;
        SftSet::save(&data_dir, SFT_VAL_FILE, &val)?;
        if let Some(t) = &template {
            self.keep_template(t, run_dir)?;
        }
        (out.format, out.train, out.val) = (Some(rows.format), train.len(), val.len());
        let sft = SftRunConfig {
            data: absolute(&self.data)?,
            eval_data: self.eval_data.as_deref().map(absolute).transpose()?,
            format: rows.format,
            max_length,
            template: template.map(|t| t.origin().to_string()),
            tokenizer: tokenizer.name(),
            packing: self.packing,
        };
        let rows = match self.packing {
            true => SftSet {
                examples: train,
                pad: 0,
                bins: None,
            }
            .packed(max_length)
            .num_rows(),
            false => train.len(),
        };
        Ok((self.config(model, sft, rows)?, out))
    }

    /// Writes the template into the run folder, with the base's `tokenizer_config.json` (the
    /// special tokens a template reads, such as `bos_token`) for a full fine-tune, whose run
    /// folder becomes a model of its own.
    fn keep_template(&self, template: &ChatTemplate, run_dir: &Path) -> Result<()> {
        let source = template.source(&Default::default())?;
        crate::io::write_atomic(
            &run_dir.join(crate::chat::TEMPLATE_JINJA),
            source.as_bytes(),
        )?;
        let config = self.base.join(crate::tokenizer::TOKENIZER_CONFIG_FILE);
        if self.lora.is_none() && config.is_file() {
            let bytes = std::fs::read(&config).map_err(|e| ArcaneError::io(&config, e))?;
            let target = run_dir.join(crate::tokenizer::TOKENIZER_CONFIG_FILE);
            crate::io::write_atomic(&target, &bytes)?;
        }
        Ok(())
    }

    /// The base's tokenizer and, for conversations, its template, or ChatML for a GPT-2
    /// model without one.
    fn tokenizer_and_template(
        &self,
        format: SftFormat,
        out: &mut SftPrepared,
    ) -> Result<(ModelTokenizer, Option<ChatTemplate>)> {
        let tokenizer = crate::checkpoint::load_tokenizer(&self.base)?;
        if !format.is_conversational() {
            return Ok((tokenizer, None));
        }
        if let Some(template) = model_template(&self.base, &tokenizer)? {
            return Ok((tokenizer, Some(template)));
        }
        let chatml = tokenizer.with_chatml().map_err(|e| {
            ArcaneError::InvalidInput(format!(
                "{} has no chat template, and {e}",
                self.base.display()
            ))
        })?;
        let needed = crate::tokenizer::CHATML_TOKENS[1].1 as usize + 1;
        let vocab = crate::checkpoint::load_config(&self.base)?.vocab_size;
        if vocab < needed {
            return Err(ArcaneError::InvalidInput(format!(
                "{} has no chat template and its vocabulary of {vocab} has no spare rows for ChatML's tokens; \
                 give the model a chat template or use prompt/completion rows",
                self.base.display()
            )));
        }
        out.notes.push(format!(
            "{} has no chat template: conversations use Arcane's ChatML, <|im_start|> and <|im_end|> \
             on the spare vocabulary rows {} and {}",
            self.base.display(),
            crate::tokenizer::CHATML_TOKENS[0].1,
            crate::tokenizer::CHATML_TOKENS[1].1
        ));
        Ok((chatml, Some(crate::chat::chatml())))
    }

    fn config(
        &self,
        model: crate::model::ModelConfig,
        sft: SftRunConfig,
        n_train: usize,
    ) -> Result<TrainingConfig> {
        let base = absolute(&self.base)?;
        let t = (sft.max_length - usize::from(!sft.packing)).min(model.max_seq_len);
        let max_steps = self
            .max_steps
            .unwrap_or_else(|| (self.epochs * n_train).div_ceil(self.micro_batch))
            .max(1);
        let lr = self
            .lr
            .unwrap_or(if self.lora.is_some() { 1e-4 } else { 2e-5 });
        let eval_every = self.eval_every.unwrap_or((max_steps / 4).max(1));
        let config = TrainingConfig {
            seed: self.seed,
            seq_len: Some(t),
            micro_batch: self.micro_batch,
            tokens_per_step: self.micro_batch * t,
            max_steps,
            optimizer: OptimizerConfig {
                max_lr: lr,
                weight_decay: 0.0,
                ..OptimizerConfig::default()
            },
            schedule: ScheduleConfig {
                warmup_steps: (max_steps / 20).max(1),
                ..ScheduleConfig::default()
            },
            eval_every,
            eval_tokens: 0,
            checkpoint_every: eval_every,
            sample_prompt: "The".into(),
            sample_tokens: 0,
            finetune: self.lora.clone().map(|lora| FinetuneConfig {
                base: base.clone(),
                lora,
                hub: self.hub.clone(),
            }),
            init: self.lora.is_none().then_some(base),
            sft: Some(sft),
            model,
            ..TrainingConfig::tiny_cpu()
        };
        config.validate(1)?;
        Ok(config)
    }
}

/// Holds out every 20th example (at least one; none taken from a single example, which then
/// serves as both).
fn held_out(train: &mut Vec<SftExample>, notes: &mut Vec<String>) -> Vec<SftExample> {
    if train.len() < 2 {
        notes.push("one example: it is also the held-out set".into());
        return train.clone();
    }
    let every = 20.min(train.len());
    let all = std::mem::take(train);
    let mut val = Vec::new();
    for (i, e) in all.into_iter().enumerate() {
        if i % every == every - 1 {
            val.push(e);
        } else {
            train.push(e);
        }
    }
    notes.push(format!(
        "held out every {every}th example: {} to train on, {} to evaluate (--eval-data FILE gives a held-out file)",
        train.len(),
        val.len()
    ));
    val
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| ArcaneError::io(path, e))
}

/// The tokenizer and chat template to chat with a LoRA SFT run in `run_dir` on top of its
/// base, whose tokenizer is `base_tokenizer`: the base's tokenizer with ChatML's tokens and
/// Arcane's ChatML when the run added them, else the base's own template (with the special
/// tokens of its `tokenizer_config.json`). `None` when `run_dir` is not an SFT run of
/// conversations. `chat --model BASE --adapter RUN` uses it.
pub fn sft_adapter_chat(
    run_dir: &Path,
    base_tokenizer: &ModelTokenizer,
) -> Result<Option<(ModelTokenizer, ChatTemplate)>> {
    if !run_dir.join(super::run::RUN_CONFIG).is_file() {
        return Ok(None);
    }
    let config = super::run::read_run_config(run_dir)?;
    let (Some(sft), Some(finetune)) = (config.sft, config.finetune) else {
        return Ok(None);
    };
    if sft.template.is_none() {
        return Ok(None);
    }
    if sft.tokenizer == crate::tokenizer::GPT2_CHATML_NAME {
        return Ok(Some((base_tokenizer.with_chatml()?, crate::chat::chatml())));
    }
    Ok(model_template(&finetune.base, base_tokenizer)?.map(|t| (base_tokenizer.clone(), t)))
}
