//! The LoRA fine-tuning recipe: the few choices a user makes (base model, adapters, steps,
//! learning rate, batch) turned into a full [`TrainingConfig`] for the same loop as
//! pre-training. The defaults follow peft and common LoRA practice: no weight decay on the
//! adapters, a warmup of 5% of the steps, cosine decay to 10%.

use std::path::{Path, PathBuf};

use super::config::{FinetuneConfig, OptimizerConfig, ScheduleConfig, TrainingConfig};
use crate::error::Result;
use crate::lora::LoraConfig;

/// What a fine-tune run is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneRecipe {
    /// The base model directory (Arcane or Hugging Face); its weights stay frozen.
    pub base: PathBuf,
    /// The adapters to train.
    pub lora: LoraConfig,
    /// Optimizer steps.
    pub max_steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Sequences per step.
    pub micro_batch: usize,
    /// Tokens per sequence (`None`: the base model's context, at most 512).
    pub seq_len: Option<usize>,
    /// Steps between validation losses and checkpoints.
    pub eval_every: usize,
    /// Where `base` came from when it is a Hub model (recorded in the run's config).
    pub hub: Option<crate::hub::HubSource>,
}

impl FinetuneRecipe {
    /// The recipe's defaults for `base` with `lora`: 200 steps at 1e-3, batches of 8,
    /// validation every 50 steps.
    pub fn new(base: impl Into<PathBuf>, lora: LoraConfig) -> Self {
        Self {
            base: base.into(),
            lora,
            max_steps: 200,
            lr: 1e-3,
            micro_batch: 8,
            seq_len: None,
            eval_every: 50,
            hub: None,
        }
    }

    /// The training config of this recipe for the prepared data in `data_dir`: without an
    /// explicit `seq_len`, sequences are shortened to fit a small training split (LoRA data
    /// sets are often a few hundred tokens). Returns a notice when they were.
    pub fn config_for_data(&self, data_dir: &Path) -> Result<(TrainingConfig, Option<String>)> {
        let mut recipe = self.clone();
        let mut notice = None;
        if recipe.seq_len.is_none() {
            let model = crate::checkpoint::load_config(&self.base)?;
            let (train, fitted) =
                crate::data::TokenData::open_fitting(data_dir, "train", default_seq_len(&model))?;
            recipe.seq_len = Some(train.seq_len());
            notice = fitted;
        }
        Ok((recipe.config()?, notice))
    }

    /// The training config of this recipe: reads the base model's architecture and checks
    /// the adapters and the batch arithmetic against it. The base is recorded by its absolute
    /// path, so that the run can be resumed from any working directory.
    pub fn config(&self) -> Result<TrainingConfig> {
        let model = crate::checkpoint::load_config(&self.base)?;
        self.lora.validate(&model)?;
        let base =
            std::path::absolute(&self.base).map_err(|e| crate::ArcaneError::io(&self.base, e))?;
        let t = self.seq_len.unwrap_or(default_seq_len(&model));
        let config = TrainingConfig {
            seq_len: Some(t),
            micro_batch: self.micro_batch,
            tokens_per_step: self.micro_batch * t,
            max_steps: self.max_steps,
            // No weight decay on adapters (peft's default); short warmup, cosine to 10%.
            optimizer: OptimizerConfig {
                max_lr: self.lr,
                weight_decay: 0.0,
                ..OptimizerConfig::default()
            },
            schedule: ScheduleConfig {
                warmup_steps: (self.max_steps / 20).max(1),
                ..ScheduleConfig::default()
            },
            eval_every: self.eval_every,
            eval_tokens: 8 * self.micro_batch * t,
            checkpoint_every: self.eval_every,
            sample_prompt: "The".into(),
            sample_tokens: 32,
            finetune: Some(FinetuneConfig {
                base,
                lora: self.lora.clone(),
                hub: self.hub.clone(),
            }),
            model,
            ..TrainingConfig::tiny_cpu()
        };
        config.validate(1)?;
        Ok(config)
    }
}

/// The recipe's sequence length: the base model's context, at most 512.
fn default_seq_len(model: &crate::model::ModelConfig) -> usize {
    model.max_seq_len.min(512)
}
