//! Rewards: the [`RewardFn`] interface that PPO and RLOO score samples with, and the learned
//! reward model, the Arcane trunk with a scalar head read at the last real token (Ziegler et
//! al. 2019; TRL's `AutoModelForSequenceClassification` with one label).
//!
//! A reward model directory holds `reward.json` (format, base architecture, tokenizer) and
//! `model.safetensors` (the trunk, LoRA adapters merged, and `head.linear.*`), both written
//! atomically, the manifest last.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::batch::{bos_of, vocab_limit_of, SeqBatch, Sequence};
use super::head::ScalarHead;
use crate::checkpoint;
use crate::error::{ArcaneError, Result};
use crate::io::Versioned;
use crate::model::{Gpt, ModelConfig};
use crate::tokenizer::{ModelTokenizer, TOKENIZER_FILE};
use crate::weights;

/// Scores sampled responses. PPO and RLOO call it once per batch of rollouts.
pub trait RewardFn {
    /// One score per response. `prompts` are the prompts' ids (without the opening BOS);
    /// `responses` end before their first end-of-text.
    fn score(&mut self, prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Result<Vec<f32>>;
}

/// A closure `(prompt, response) -> score` as a reward (programmatic rewards, tests).
pub struct FnReward<F>(pub F);

impl<F: FnMut(&[u32], &[u32]) -> f32> RewardFn for FnReward<F> {
    fn score(&mut self, prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Result<Vec<f32>> {
        Ok(prompts
            .iter()
            .zip(responses)
            .map(|(p, r)| (self.0)(p, r))
            .collect())
    }
}

/// A language model trunk with a scalar head.
#[derive(Module, Debug)]
pub struct RewardModel<B: Backend> {
    /// The transformer up to its final norm (its vocabulary head is never used).
    pub trunk: Gpt<B>,
    /// `[C] -> [1]`.
    pub head: ScalarHead<B>,
}

impl<B: Backend> RewardModel<B> {
    /// A reward model on `trunk` with a fresh head: weights N(0, 1/(C + 1)), bias 0 (the
    /// reward head init of lm-human-preferences).
    pub fn new(trunk: Gpt<B>) -> Self {
        let c = trunk.config().d_model;
        let head = ScalarHead::new(c, 1.0 / ((c + 1) as f64).sqrt(), &trunk.device());
        Self { trunk, head }
    }

    /// The reward of each sequence: the head on the final hidden state of its last real
    /// token. Only the trunk runs (no vocabulary matmul).
    ///
    /// # Shapes
    /// - output: `[B]`
    pub fn forward(&self, batch: &SeqBatch<B>) -> Tensor<B, 1> {
        let hidden = self.trunk.forward_hidden(batch.tokens.clone(), None); // [B, T, C]
        let [b, t, c] = hidden.dims();
        let last = hidden.reshape([b * t, c]).select(0, batch.last.clone()); // [B, C]
        self.head.forward_rows(last)
    }

    /// Rewards of `[BOS] + prompt + completion` for each pair of `prompts` and `completions`,
    /// in batches of `batch`, each cut to the model's context.
    pub fn score_texts(
        &self,
        prompts: &[Vec<u32>],
        completions: &[Vec<u32>],
        batch: usize,
    ) -> Vec<f32> {
        let config = self.trunk.config();
        let bos = bos_of(config);
        let device = self.trunk.device();
        let seqs: Vec<Sequence> = prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| {
                let mut s = Sequence::new(bos, p, c);
                s.truncate(config.max_seq_len);
                s
            })
            .collect();
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(batch.max(1)) {
            let rewards = self.forward(&SeqBatch::new(chunk, bos, &device));
            out.extend(
                rewards
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("f32"),
            );
        }
        out
    }
}

impl<B: Backend> RewardFn for RewardModel<B> {
    fn score(&mut self, prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Result<Vec<f32>> {
        // Hidden states, not a softmax: any row of the vocabulary can be read.
        let limit = self.trunk.config().vocab_size;
        for ids in prompts.iter().chain(responses) {
            super::batch::check_ids(ids, limit, "a sample for the reward model")?;
        }
        Ok(self.score_texts(prompts, responses, 32))
    }
}

/// Manifest file of a reward model directory.
pub const REWARD_MANIFEST: &str = "reward.json";
/// Weights file of a reward model directory.
pub const REWARD_WEIGHTS: &str = "model.safetensors";
/// Format and version of `reward.json`.
pub const REWARD_FORMAT: Versioned = Versioned {
    format: "arcane-reward",
    version: 1,
    what: "Arcane reward model manifest",
    remedy: "train the reward model again",
};

/// `reward.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardManifest {
    /// Always "arcane-reward".
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The trunk's architecture.
    pub base_config: ModelConfig,
    /// The tokenizer the trunk reads (`gpt2`, or `tokenizer.json sha256:...`: [`model_tokenizer`]).
    pub tokenizer: String,
    /// Where the base model came from, for people (not checked).
    pub base_source: String,
}

/// Saves a reward model (its LoRA adapters merged into the trunk) as a directory.
pub fn save_reward_model<B: Backend>(
    model: RewardModel<B>,
    dir: &Path,
    base_source: &str,
    tokenizer: &ModelTokenizer,
) -> Result<()> {
    let model = RewardModel {
        trunk: crate::lora::merge_and_unload(model.trunk),
        head: model.head,
    };
    std::fs::create_dir_all(dir).map_err(|e| ArcaneError::io(dir, e))?;
    // The tokenizer travels with the reward model (`reward eval` reads pairs with it).
    let identity = tokenizer.identity()?;
    tokenizer.save_into(dir)?;
    let meta = HashMap::from([("format".to_string(), REWARD_FORMAT.format.to_string())]);
    weights::write_safetensors(&dir.join(REWARD_WEIGHTS), &weights::collect(&model), meta)?;
    let manifest = RewardManifest {
        format: REWARD_FORMAT.format.into(),
        version: REWARD_FORMAT.version,
        base_config: model.trunk.config().clone(),
        tokenizer: identity,
        base_source: base_source.into(),
    };
    REWARD_FORMAT.write(&dir.join(REWARD_MANIFEST), &manifest)
}

/// The tokenizer of a reward model directory: the built-in one its manifest names (`gpt2`), or
/// the `tokenizer.json` saved beside it, which must still be the one it was trained with.
pub fn load_reward_tokenizer(dir: &Path) -> Result<ModelTokenizer> {
    let manifest: RewardManifest = REWARD_FORMAT.read(&dir.join(REWARD_MANIFEST))?;
    if let Some(tokenizer) = ModelTokenizer::builtin(&manifest.tokenizer) {
        return Ok(tokenizer);
    }
    let tokenizer = ModelTokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
    let found = tokenizer.identity()?;
    if found != manifest.tokenizer {
        return Err(ArcaneError::format(
            dir,
            format!(
                "the reward model was trained with the tokenizer {} but its {TOKENIZER_FILE} is {found}; \
                 put back the tokenizer.json of the base it was trained on",
                manifest.tokenizer
            ),
        ));
    }
    Ok(tokenizer)
}

/// True if `dir` holds a reward model.
pub fn is_reward_dir(dir: &Path) -> bool {
    dir.join(REWARD_MANIFEST).is_file()
}

/// Loads a reward model directory onto `device`.
pub fn load_reward_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(RewardModel<B>, RewardManifest)> {
    if !is_reward_dir(dir) {
        return Err(ArcaneError::format(
            dir,
            "not a reward model directory (no reward.json); train one with `arcane-cli reward train`",
        ));
    }
    let manifest: RewardManifest = REWARD_FORMAT.read(&dir.join(REWARD_MANIFEST))?;
    let path = dir.join(REWARD_WEIGHTS);
    let tensors = weights::read_safetensors(std::slice::from_ref(&path))?;
    let c = manifest.base_config.d_model;
    let fresh = RewardModel {
        trunk: manifest.base_config.init(device)?,
        head: ScalarHead::new(c, 0.0, device),
    };
    Ok((weights::apply(fresh, tensors, &path)?, manifest))
}

/// The identity of a model directory's tokenizer ([`ModelTokenizer::identity`]): `gpt2`
/// for GPT-2's, the hash of its `tokenizer.json` for another (Llama, Qwen, ...).
///
/// [`ModelTokenizer::identity`]: crate::tokenizer::ModelTokenizer::identity
pub fn model_tokenizer(dir: &Path) -> Result<String> {
    checkpoint::load_tokenizer(&checkpoint::locate(dir)?)?.identity()
}

/// Refuses a reward model that cannot read what the policy writes: another tokenizer, a
/// vocabulary without some id the policy may sample, or a context too short for
/// `max_tokens` (BOS + prompt + response).
pub fn check_reward_compatible(
    reward: &RewardManifest,
    policy: &ModelConfig,
    policy_tokenizer: &str,
    max_tokens: usize,
) -> Result<()> {
    let fail = |m: String| Err(ArcaneError::InvalidInput(m));
    let sampled = vocab_limit_of(policy);
    if reward.tokenizer != policy_tokenizer {
        return fail(format!(
            "the reward model reads {} tokens (a vocabulary of {}) but the policy writes \
             {policy_tokenizer} tokens (a vocabulary of {sampled}); train the reward model on a \
             base with the policy's tokenizer",
            reward.tokenizer, reward.base_config.vocab_size
        ));
    }
    if reward.base_config.vocab_size < sampled {
        return fail(format!(
            "the reward model's base has a vocabulary of {} tokens but the policy samples from \
             {sampled}: it was trained on a base with another tokenizer; train the reward model \
             on the policy's base",
            reward.base_config.vocab_size
        ));
    }
    if reward.base_config.max_seq_len < max_tokens {
        return fail(format!(
            "the reward model's context is {} tokens but prompt and response take up to \
             {max_tokens}; shorten --response-tokens or the prompts",
            reward.base_config.max_seq_len
        ));
    }
    Ok(())
}
