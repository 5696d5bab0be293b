//! `arcane-cli reward eval`: how often a reward model ranks the chosen completion of a pair
//! above the rejected one.

use anyhow::{Context, Result};
use arcane::align::{
    check_ids, evaluate_reward_model, load_reward_chat, load_reward_model, load_reward_tokenizer,
    TokenPair,
};
use burn::prelude::*;
use serde_json::json;

use crate::align_args::read_pairs;
use crate::backend::{self, BackendKind, Task};
use crate::cli_align::RewardEvalArgs;

/// Reads the pairs, then scores them on the chosen backend.
pub fn run(args: RewardEvalArgs, backend_kind: BackendKind) -> Result<()> {
    let tokenizer = load_reward_tokenizer(&args.model)
        .with_context(|| format!("loading the reward model {}", args.model.display()))?;
    let chat = load_reward_chat(&args.model, &tokenizer)?;
    let (pairs, _) = read_pairs(
        &args.pairs.data,
        args.pairs.skip_bad,
        &tokenizer,
        chat.as_ref(),
    )
    .context("conversational pairs need a reward model trained on conversations")?;
    backend::run(backend_kind, RewardEval { args, pairs })
}

struct RewardEval {
    args: RewardEvalArgs,
    pairs: Vec<TokenPair>,
}

impl Task for RewardEval {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = &self.args;
        let (model, _) = load_reward_model::<B>(&args.model, &device)
            .with_context(|| format!("loading the reward model {}", args.model.display()))?;
        let limit = model.trunk.config().vocab_size;
        for (i, p) in self.pairs.iter().enumerate() {
            let ids: Vec<u32> = p.ids().collect();
            check_ids(&ids, limit, &format!("pair {}", i + 1))?;
        }
        let s = evaluate_reward_model(&model, &self.pairs, args.batch, args.margin);
        if args.json {
            println!(
                "{}",
                json!({"accuracy": s.accuracy, "n": s.n, "margin_mean": s.margin_mean, "loss": s.loss})
            );
        } else {
            println!(
                "accuracy {:.4} over {} pairs, mean margin {:.3}, loss {:.4}",
                s.accuracy, s.n, s.margin_mean, s.loss
            );
        }
        Ok(())
    }
}
