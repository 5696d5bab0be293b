//! `arcane-cli eval reward`: the reward of a policy's samples on prompts and their KL to the
//! same model without the adapter (or to --reference): RLHF's before/after figures.
//! Conversational prompts are rendered with the model's chat template and responses end at its
//! end-of-turn token.

use std::io::Write;

use anyhow::{bail, Context, Result};
use arcane::align::{
    check_ids, evaluate_reward, ChatFormat, RewardEval, RewardEvalConfig, RolloutConfig,
};
use arcane::ModelTokenizer;
use burn::prelude::*;
use serde_json::json;

use crate::align_args::{max_sequence, model_chat, read_prompts, RewardSpec};
use crate::backend::{self, BackendKind, Task};
use crate::cli_align::EvalRewardArgs;
use crate::model_arg::load_model;

/// Reads the prompts and the reward argument, then samples on the chosen backend.
pub fn run(args: EvalRewardArgs, backend_kind: BackendKind) -> Result<()> {
    if !(args.temperature > 0.0 && args.temperature.is_finite()) {
        bail!("--temperature must be positive: the KL is that of the sampling distribution");
    }
    let tokenizer = crate::model_arg::load_tokenizer(&args.model)?;
    let model_format = model_chat(&args.model, &tokenizer)?;
    let (prompts, is_chat) = read_prompts(
        &args.prompts,
        args.skip_bad,
        &tokenizer,
        model_format.as_ref(),
    )?;
    let chat = if is_chat { model_format } else { None };
    let reward = RewardSpec::parse(&args.reward)?;
    backend::run(
        backend_kind,
        EvalReward {
            args,
            prompts,
            reward,
            tokenizer,
            chat,
        },
    )
}

struct EvalReward {
    args: EvalRewardArgs,
    prompts: Vec<Vec<u32>>,
    reward: RewardSpec,
    tokenizer: ModelTokenizer,
    chat: Option<ChatFormat>,
}

impl Task for EvalReward {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = &self.args;
        let policy = load_model::<B>(&args.model, args.adapter.as_deref(), &device)?;
        let reference = load_model::<B>(
            args.reference.as_deref().unwrap_or(&args.model),
            None,
            &device,
        )?;
        if reference.config().vocab_size != policy.config().vocab_size {
            bail!("the reference has another vocabulary than the policy; give a reference of the same base");
        }
        let tokenizer = self.tokenizer.identity()?;
        let mut rollout =
            RolloutConfig::for_model(policy.config(), args.response_tokens, args.temperature);
        if let Some(chat) = &self.chat {
            rollout = rollout.with_chat_stop(chat.stop_ids());
        }
        for (i, p) in self.prompts.iter().enumerate() {
            check_ids(p, rollout.vocab_limit, &format!("prompt {}", i + 1))?;
        }
        let max_tokens = max_sequence(
            &self.prompts,
            rollout.chat,
            args.max_prompt_tokens,
            args.response_tokens,
        );
        let mut reward = self.reward.load::<B>(
            &device,
            policy.config(),
            &tokenizer,
            max_tokens,
            self.chat.as_ref(),
        )?;
        let config = RewardEvalConfig {
            samples: args.samples,
            batch: args.batch,
            seed: args.seed,
            max_prompt_tokens: args.max_prompt_tokens,
        };
        let result = evaluate_reward(
            &policy,
            &reference,
            &self.prompts,
            &mut *reward,
            &rollout,
            &config,
        )
        .context("sampling and scoring")?;
        if let Some(path) = &args.write_samples {
            write_samples(path, &result, &self.tokenizer)?;
        }
        if args.json {
            println!(
                "{}",
                json!({"reward_mean": result.reward_mean, "reward_std": result.reward_std, "kl_mean": result.kl_mean, "ended": result.ended, "n": result.n})
            );
        } else {
            for s in result.samples.iter().take(3) {
                let text = self
                    .tokenizer
                    .decode(&[s.prompt.as_slice(), &s.response].concat())?;
                println!("[reward {:+.3}] {text:?}", s.reward);
            }
            println!(
                "reward {:.4} ± {:.4} (std), KL to the reference {:.3} nats per sequence, over {} samples",
                result.reward_mean, result.reward_std, result.kl_mean, result.n
            );
        }
        Ok(())
    }
}

fn write_samples(
    path: &std::path::Path,
    result: &RewardEval,
    tokenizer: &ModelTokenizer,
) -> Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for s in &result.samples {
        let line = json!({
            "prompt": tokenizer.decode(&s.prompt)?,
            "response": tokenizer.decode(&s.response)?,
            "reward": s.reward,
            "kl": s.kl,
            "ended": s.ended,
        });
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    Ok(())
}
