//! `arcane-cli ppo` (and `rloo`): RLHF against a reward model or the lexicon. PPO with a
//! value head, GAE and an adaptive per-token KL penalty, or RLOO with k samples per prompt;
//! the reference is the starting model (adapters off under LoRA).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use arcane::align::{
    evaluate_reward, model_tokenizer, Algo, AlignLog, OptimSettings, RewardEval, RewardEvalConfig,
    RewardFn, RlConfig, RlTrainer,
};
use arcane::Tokenizer;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Map, Value};

use crate::align_args::{lora_config, progress, read_prompts, save_policy, start_run, RewardSpec};
use crate::backend::{self, BackendKind, Task};
use crate::cli_align::RlArgs;
use crate::model_arg::load_model;

/// Resolves the algorithm and the config, reads the prompts, then trains.
pub fn run(args: RlArgs, forced: Option<Algo>, backend_kind: BackendKind) -> Result<()> {
    let algo = match (forced, args.algo.as_deref()) {
        (Some(a), None) => a,
        (Some(a), Some(s)) => {
            if s.parse::<Algo>()? != a {
                bail!("`{}` runs {}; drop --algo {s}", a.name(), a.name());
            }
            a
        }
        (None, Some(s)) => s.parse()?,
        (None, None) => Algo::Ppo,
    };
    let base = match algo {
        Algo::Ppo => RlConfig::ppo(),
        Algo::Rloo => RlConfig::rloo(),
    };
    let config = RlConfig {
        iterations: args.max_steps,
        rollouts: args.rollouts,
        minibatch: args.minibatch,
        ppo_epochs: args.ppo_epochs.unwrap_or(base.ppo_epochs),
        response_tokens: args.response_tokens,
        max_prompt_tokens: args.max_prompt_tokens,
        temperature: args.temperature,
        kl_coef: args.kl_coef.unwrap_or(base.kl_coef),
        kl_target: (args.kl_target > 0.0).then_some(args.kl_target),
        kl_horizon: args.kl_horizon,
        rloo_k: args.k,
        normalize_reward: !args.no_reward_norm,
        optim: OptimSettings {
            lr: args.lr,
            ..OptimSettings::default()
        },
        lora: lora_config(&args.lora)?,
        seed: args.seed,
        ..base
    };
    config.validate()?;
    let prompts = read_prompts(&args.prompts, args.skip_bad)?;
    let eval_prompts = match &args.eval_prompts {
        Some(path) => Some(read_prompts(path, args.skip_bad)?),
        None => None,
    };
    let reward = RewardSpec::parse(&args.reward)?;
    backend::run(
        backend_kind,
        Rl {
            args,
            config,
            prompts,
            eval_prompts,
            reward,
        },
    )
}

struct Rl {
    args: RlArgs,
    config: RlConfig,
    prompts: Vec<Vec<u32>>,
    eval_prompts: Option<Vec<Vec<u32>>>,
    reward: RewardSpec,
}

impl Task for Rl {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        self.train::<Autodiff<B>>(device)
    }
}

/// Reward and KL of the current policy on the held-out prompts.
fn held_out<B: AutodiffBackend>(
    trainer: &RlTrainer<B>,
    prompts: &[Vec<u32>],
    samples: usize,
    reward: &mut dyn RewardFn,
) -> Result<RewardEval> {
    let config = RewardEvalConfig {
        samples,
        ..RewardEvalConfig::default()
    };
    let policy = trainer.model().valid().policy;
    Ok(evaluate_reward(
        &policy,
        trainer.reference(),
        prompts,
        reward,
        trainer.rollout_config(),
        &config,
    )?)
}

impl Rl {
    fn train<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let (args, config) = (&self.args, &self.config);
        let algo = config.algo.name();
        let policy = load_model::<B>(&args.model, None, &device)?;
        let tokenizer = model_tokenizer(&args.model)?;
        let max_tokens = 1 + config.max_prompt_tokens + config.response_tokens;
        let mut reward = self.reward.load::<B::InnerBackend>(
            &device,
            policy.config(),
            &tokenizer,
            max_tokens,
        )?;
        let inputs = [("prompts", args.prompts.as_path())];
        let metrics = start_run(&args.out, algo, &args.model, &inputs, config)?;
        let mut log = AlignLog::new(Some(metrics), progress(5));
        let mut trainer = RlTrainer::new(policy, self.prompts.clone(), config.clone())
            .context("setting up the run")?;
        eprintln!(
            "{} on {} against {} ({} iterations of {} responses of {} tokens) -> {}",
            algo.to_uppercase(),
            args.model.display(),
            args.reward,
            config.iterations,
            config.rollouts,
            config.response_tokens,
            args.out.display()
        );
        let start = Instant::now();
        let eval = |t: &RlTrainer<B>, r: &mut dyn RewardFn| -> Result<Option<RewardEval>> {
            match &self.eval_prompts {
                Some(p) => Ok(Some(held_out(t, p, args.eval_samples, r)?)),
                None => Ok(None),
            }
        };
        let before = eval(&trainer, &mut *reward)?;
        if let Some(b) = &before {
            log.record(
                algo,
                0,
                &[
                    ("eval/reward_mean", b.reward_mean),
                    ("eval/reward_std", b.reward_std),
                    ("eval/kl_mean", b.kl_mean),
                ],
            )?;
        }
        if config.normalize_reward {
            let (mean, std) = trainer.normalize_reward(&mut *reward)?;
            log.record(
                algo,
                0,
                &[("env/reward_norm_mean", mean), ("env/reward_norm_std", std)],
            )?;
        }
        let decoder = Tokenizer::gpt2();
        let mut last = Vec::new();
        for i in 0..config.iterations {
            let (stats, exp) = trainer
                .step(&mut *reward)
                .with_context(|| format!("iteration {}", i + 1))?;
            last = stats.named();
            log.record(algo, stats.iteration, &last)?;
            if i % 10 == 0 || i + 1 == config.iterations {
                let text =
                    decoder.decode(&[exp.prompts[0].as_slice(), &exp.responses[0]].concat())?;
                log.sample(stats.iteration, text)?;
            }
        }
        let after = eval(&trainer, &mut *reward)?;
        if let Some(a) = &after {
            log.record(
                algo,
                config.iterations,
                &[
                    ("eval/reward_mean", a.reward_mean),
                    ("eval/reward_std", a.reward_std),
                    ("eval/kl_mean", a.kl_mean),
                ],
            )?;
        }
        let seconds = start.elapsed().as_secs_f64();
        let usage = save_policy(&trainer.into_policy(), &args.out, &args.model)?;
        if args.json {
            let mut out: Map<String, Value> = last
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            if let (Some(b), Some(a)) = (&before, &after) {
                out.insert("eval/before".into(), json!({"reward_mean": b.reward_mean, "reward_std": b.reward_std, "kl_mean": b.kl_mean, "n": b.n}));
                out.insert("eval/after".into(), json!({"reward_mean": a.reward_mean, "reward_std": a.reward_std, "kl_mean": a.kl_mean, "n": a.n}));
            }
            out.insert("seconds".into(), json!(seconds));
            println!("{}", Value::Object(out));
        } else {
            if let (Some(b), Some(a)) = (&before, &after) {
                println!(
                    "held-out reward {:.4} -> {:.4} (reference std {:.4}), KL {:.3} nats per sequence",
                    b.reward_mean, a.reward_mean, b.reward_std, a.kl_mean
                );
            }
            println!("trained in {seconds:.0} s; {usage}");
        }
        Ok(())
    }
}
