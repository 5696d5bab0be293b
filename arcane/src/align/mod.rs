//! Alignment: reward models, DPO, and RLHF with PPO and RLOO, on the Arcane model.
//!
//! - **Reward model** ([`RewardModel`]): the model's trunk with a scalar head on the last real
//!   token, trained with the Bradley-Terry loss `-log σ(r_w - r_l - m)` ([`reward_loss`]).
//! - **DPO** (Rafailov et al. 2023, arXiv:2305.18290; [`dpo_loss`], [`train_dpo`]): the policy
//!   learns from preference pairs directly, against log-probabilities of a frozen reference
//!   computed once up front.
//! - **PPO** (Ziegler et al. 2019, arXiv:1909.08593; Stiennon et al. 2020; TRL <= 0.7) and
//!   **RLOO** (Ahmadian et al. 2024, arXiv:2402.14740): [`RlTrainer`] samples responses with
//!   the KV cache, scores them with a [`RewardFn`] (a reward model or the VADER [`Lexicon`]),
//!   and optimises the policy with a per-token KL penalty towards the reference.
//!
//! Every sequence is `[EOT] + prompt + completion`, right-padded: under causal attention the
//! padding after a sequence never reaches its real positions, so no attention mask is needed
//! ([`SeqBatch`]). The optimizer, schedule, clipping and metrics file are the training
//! module's ([`Updater`]); burn-train's Learner is not used because PPO makes its own data
//! and drives three models (policy with value head, reference, reward).
//!
//! Data: TRL's JSONL formats, plain text or conversational ([`load_pair_rows`],
//! [`load_prompt_rows`]; conversations rendered with the model's chat template by
//! [`ChatFormat`], generation then stopping at the template's end-of-turn token as well as
//! EOS), and the bundled sentiment data ([`sentiment`]).

mod advantage;
mod batch;
mod chat_data;
mod data;
mod dpo;
mod dpo_train;
mod eval;
mod experience;
mod head;
mod lexicon;
mod logprob;
mod optim;
mod policy;
mod reward;
mod reward_chat;
mod reward_train;
mod rl_config;
mod rl_stats;
mod rl_train;
mod rollout;
pub mod sentiment;

pub use advantage::{gae, rloo_advantages, token_rewards, whiten, AdaptiveKl};
pub use batch::{bos_of, check_ids, eos_of, vocab_limit_of, SeqBatch, Sequence};
pub use chat_data::{
    load_pair_rows, load_prompt_rows, parse_pair_rows, parse_prompt_rows, tokenize_pair_rows,
    tokenize_prompt_rows, ChatFormat, ChatPair, PairRows, PromptRows,
};
pub use data::{
    load_pairs, load_prompts, parse_pairs, parse_prompts, prompt_ids, tokenize_pairs, write_jsonl,
    PreferencePair, PromptRecord, TokenPair,
};
pub use dpo::{dpo_loss, DpoLossKind, DpoStats};
pub use dpo_train::{
    evaluate_dpo, reference_logps, reference_logps_over, train_dpo, DpoConfig, PairLogps,
};
pub use eval::{evaluate_reward, RewardEval, RewardEvalConfig, RewardSample};
pub use experience::Experience;
pub use head::ScalarHead;
pub use lexicon::{Lexicon, LexiconReward};
pub use logprob::{
    response_logprobs, response_targets, rollout_inputs, sequence_logprobs, token_entropy,
    token_logprobs,
};
pub use optim::{AlignLog, OptimSettings, StepReport, Updater};
pub use policy::{
    policy_loss, value_loss, PolicyLossStats, PolicyValue, ResponseOutput, ValueLossStats,
};
pub use reward::{
    check_reward_compatible, is_reward_dir, load_reward_model, load_reward_tokenizer,
    model_tokenizer, save_reward_model, FnReward, RewardFn, RewardManifest, RewardModel,
    REWARD_FORMAT, REWARD_MANIFEST, REWARD_WEIGHTS,
};
pub use reward_chat::{check_reward_chat, load_reward_chat, save_reward_chat, REWARD_CHAT};
pub use reward_train::{
    evaluate_reward_model, reward_loss, train_reward_model, PairwiseStats, RewardConfig,
};
pub use rl_config::{Algo, RlConfig};
pub use rl_stats::IterationStats;
pub use rl_train::RlTrainer;
pub use rollout::{
    equal_length_batches, generate_batch, prompt_batches, sample_token, RolloutConfig,
};
