//! What the alignment commands share: LoRA flags, pairs and prompts read with their bad lines
//! reported, the `--reward` argument, the run folder, progress lines and saving the policy.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arcane::align::{
    check_reward_chat, check_reward_compatible, load_pair_rows, load_prompt_rows,
    load_reward_model, load_reward_tokenizer, tokenize_pair_rows, tokenize_prompt_rows, ChatFormat,
    Lexicon, LexiconReward, PairRows, PromptRows, RewardFn, TokenPair,
};
use arcane::eval::BadLine;
use arcane::lora::{LoraConfig, LoraTarget};
use arcane::model::ModelConfig;
use arcane::training::{MetricRecord, MetricsLog};
use arcane::{Gpt, ModelTokenizer};
use burn::prelude::*;
use serde::Serialize;

use crate::cli_align::LoraArgs;

/// The adapters the flags ask for, if any.
pub fn lora_config(args: &LoraArgs) -> Result<Option<LoraConfig>> {
    let Some(rank) = args.lora_rank else {
        return Ok(None);
    };
    let targets = args
        .lora_targets
        .iter()
        .map(|t| t.parse::<LoraTarget>())
        .collect::<arcane::Result<Vec<_>>>()?;
    Ok(Some(LoraConfig {
        rank,
        alpha: args.lora_alpha.unwrap_or(2.0 * rank as f64),
        dropout: 0.0,
        targets,
    }))
}

fn report_bad(path: &Path, bad: &[BadLine]) {
    for b in bad {
        eprintln!("skipped line {}: {}", b.line, b.reason);
    }
    if !bad.is_empty() {
        eprintln!("skipped {} bad line(s) of {}", bad.len(), path.display());
    }
}

/// The chat format of a model (folder or Hub model): its tokenizer and chat template (its
/// own, or Arcane's ChatML for a GPT-2 model fine-tuned on conversations); None without one.
pub fn model_chat(model: &Path, tokenizer: &ModelTokenizer) -> Result<Option<ChatFormat>> {
    let dir = crate::hub_model::model_dir(model).context("cannot load the model")?;
    ChatFormat::from_model_dir(&dir, tokenizer)
        .with_context(|| format!("reading the chat template of {}", dir.display()))
}

/// Reads preference pairs (plain text, or conversations rendered with `chat`) and tokenises
/// them with the model's tokenizer, reporting skipped lines. Returns whether they were
/// conversations.
pub fn read_pairs(
    path: &Path,
    skip_bad: bool,
    tokenizer: &ModelTokenizer,
    chat: Option<&ChatFormat>,
) -> Result<(Vec<TokenPair>, bool)> {
    let (rows, bad) = load_pair_rows(path, skip_bad)?;
    report_bad(path, &bad);
    let pairs = tokenize_pair_rows(&rows, tokenizer, chat)
        .with_context(|| format!("tokenising {}", path.display()))?;
    Ok((pairs, matches!(rows, PairRows::Chat(_))))
}

/// Reads prompts (plain text, or conversations rendered with `chat` and its generation
/// prompt) and tokenises them with the model's tokenizer (without the opening BOS, which the
/// rollouts put in front), reporting skipped lines. Returns whether they were conversations.
pub fn read_prompts(
    path: &Path,
    skip_bad: bool,
    tokenizer: &ModelTokenizer,
    chat: Option<&ChatFormat>,
) -> Result<(Vec<Vec<u32>>, bool)> {
    let (rows, bad) = load_prompt_rows(path, skip_bad)?;
    report_bad(path, &bad);
    let prompts = tokenize_prompt_rows(&rows, tokenizer, chat)
        .with_context(|| format!("tokenising {}", path.display()))?;
    Ok((prompts, matches!(rows, PromptRows::Chat(_))))
}

/// Tokens of BOS + prompt + response at most: plain prompts are cut to `max_prompt_tokens`,
/// chat prompts never.
pub fn max_sequence(
    prompts: &[Vec<u32>],
    chat: bool,
    max_prompt_tokens: usize,
    response: usize,
) -> usize {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    1 + if chat {
        longest
    } else {
        longest.min(max_prompt_tokens)
    } + response
}

/// Tells how many pairs exceed the context (they are cut: completion end first).
pub fn note_long_pairs(pairs: &[TokenPair], context: usize, what: &str) {
    let long = pairs
        .iter()
        .filter(|p| 1 + p.prompt.len() + p.chosen.len().max(p.rejected.len()) > context)
        .count();
    if long > 0 {
        eprintln!(
            "{long} {what} pair(s) exceed the model's context of {context} tokens and are cut"
        );
    }
}

/// The `--reward` argument.
#[derive(Clone, Debug, PartialEq)]
pub enum RewardSpec {
    /// `lexicon` (the bundled VADER lexicon) or `lexicon:FILE`.
    Lexicon(Option<PathBuf>),
    /// A reward model directory.
    Model(PathBuf),
}

impl RewardSpec {
    /// Parses `lexicon`, `lexicon:FILE` or a reward model directory.
    pub fn parse(arg: &str) -> Result<Self> {
        if arg == "lexicon" {
            return Ok(Self::Lexicon(None));
        }
        if let Some(file) = arg.strip_prefix("lexicon:") {
            return Ok(Self::Lexicon(Some(file.into())));
        }
        let dir = PathBuf::from(arg);
        if !arcane::align::is_reward_dir(&dir) {
            bail!(
                "--reward {arg}: not a reward model directory (no reward.json); give one from \
                 `arcane-cli reward train`, `lexicon` or `lexicon:FILE`"
            );
        }
        Ok(Self::Model(dir))
    }

    /// Loads the reward on `device`, refusing a reward model that cannot read the policy:
    /// another tokenizer, a smaller vocabulary, a context shorter than `max_tokens`, or
    /// another format than the prompts' (`chat`: the policy's chat format for chat prompts).
    pub fn load<B: Backend>(
        &self,
        device: &B::Device,
        policy: &ModelConfig,
        policy_tokenizer: &str,
        max_tokens: usize,
        chat: Option<&ChatFormat>,
    ) -> Result<Box<dyn RewardFn>> {
        let lexicon = |lexicon: Lexicon| -> Result<Box<dyn RewardFn>> {
            if policy_tokenizer != "gpt2" && policy_tokenizer != "gpt2-chatml" {
                bail!("the lexicon reward decodes GPT-2 tokens, but the policy uses {policy_tokenizer}");
            }
            Ok(Box::new(LexiconReward::new(lexicon)))
        };
        match self {
            Self::Lexicon(None) => lexicon(Lexicon::vader()?),
            Self::Lexicon(Some(path)) => lexicon(
                Lexicon::load(path)
                    .with_context(|| format!("reading the lexicon {}", path.display()))?,
            ),
            Self::Model(dir) => {
                let (model, manifest) = load_reward_model::<B>(dir, device)
                    .with_context(|| format!("loading the reward model {}", dir.display()))?;
                check_reward_compatible(&manifest, policy, policy_tokenizer, max_tokens)
                    .with_context(|| format!("refusing the reward model {}", dir.display()))?;
                let tokenizer = load_reward_tokenizer(dir)?;
                check_reward_chat(dir, &tokenizer, chat)
                    .with_context(|| format!("refusing the reward model {}", dir.display()))?;
                Ok(Box::new(model))
            }
        }
    }
}

/// Creates the run folder with `align.json` (what was run) and a fresh `metrics.jsonl`.
pub fn start_run(
    out: &Path,
    algo: &str,
    model: &Path,
    inputs: &[(&str, &Path)],
    config: &impl Serialize,
) -> Result<MetricsLog> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = serde_json::Map::new();
    for (name, path) in inputs {
        files.insert(name.to_string(), path.display().to_string().into());
    }
    let mut record = serde_json::json!({
        "format": "arcane-align-run",
        "version": 1,
        "algo": algo,
        "model": model.display().to_string(),
        "inputs": files,
        "config": config,
    });
    // A Hub base: its repository, revision and the exact commit trained from.
    if let Some(source) = crate::hub_model::hub_source(model) {
        record["model_source"] = serde_json::to_value(source)?;
    }
    let path = out.join("align.json");
    arcane::io::write_atomic(&path, serde_json::to_string_pretty(&record)?.as_bytes())?;
    Ok(MetricsLog::open(out, None)?)
}

/// The metrics printed on progress lines, when a record has them.
const SHOWN: [&str; 18] = [
    "loss",
    "accuracy",
    "margin",
    "rewards/accuracies",
    "rewards/margins",
    "env/reward_mean",
    "objective/kl",
    "objective/kl_coef",
    "ppo/loss/policy",
    "ppo/loss/value",
    "ppo/policy/clipfrac",
    "eval/loss",
    "eval/accuracy",
    "eval/rewards/accuracies",
    "eval/rewards/margins",
    "eval/reward_mean",
    "eval/kl_mean",
    "env/reward_norm_std",
];

/// Prints a progress line for the first record, every `every`-th step and every
/// evaluation, and every text sample.
pub fn progress(every: usize) -> impl FnMut(&MetricRecord) {
    move |record| match record {
        MetricRecord::Align { algo, step, values } => {
            let eval = values
                .keys()
                .any(|k| k.starts_with("eval/") || k.starts_with("env/reward_norm"));
            if eval || *step <= 1 || step % every.max(1) == 0 {
                let shown: Vec<String> = SHOWN
                    .iter()
                    .filter_map(|k| values.get(*k).map(|v| format!("{k} {v:.4}")))
                    .collect();
                eprintln!("{algo} {step}: {}", shown.join(", "));
            }
        }
        MetricRecord::Sample { step, text } => eprintln!("sample {step}: {text:?}"),
        _ => {}
    }
}

/// Saves a trained policy into `out`: its adapters alone (usable with `--adapter` and
/// `lora merge`) or, after full fine-tuning, the whole model with the base's tokenizer (and
/// so its chat template: ChatML for `gpt2-chatml`, the companion files of a `tokenizer.json`).
/// Returns how to use it.
pub fn save_policy<B: Backend>(policy: &Gpt<B>, out: &Path, base: &Path) -> Result<String> {
    let (o, b) = (out.display(), base.display());
    if policy.lora.is_some() {
        arcane::lora::save_adapter(policy, out, &b.to_string())
            .with_context(|| format!("writing the adapter to {o}"))?;
        Ok(format!(
            "the adapter is in {o}: use it with `--model {b} --adapter {o}` (generate, eval) or `arcane-cli lora merge`"
        ))
    } else {
        let tokenizer = crate::model_arg::load_tokenizer(base)?;
        arcane::checkpoint::save_model_with_tokenizer(policy, out, Some(&tokenizer))
            .with_context(|| format!("writing the model to {o}"))?;
        Ok(format!("the model is in {o}: use it with `--model {o}`"))
    }
}
