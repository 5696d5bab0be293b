//! `arcane-cli ppo` (and `rloo`): RLHF against a reward model or the lexicon. PPO with a
//! value head, GAE and an adaptive per-token KL penalty, or RLOO with k samples per prompt;
//! the reference is the starting model (adapters off under LoRA). Conversational prompts are
//! rendered with the model's chat template and responses end at its end-of-turn token.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use arcane::align::{
    evaluate_reward, Algo, AlignLog, ChatFormat, OptimSettings, RewardEval, RewardEvalConfig,
    RewardFn, RlConfig, RlTrainer,
};
use arcane::ModelTokenizer;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Map, Value};

use crate::align_args::{
    lora_config, max_sequence, model_chat, progress, read_prompts, save_policy, start_run,
    RewardSpec,
};
use crate::backend::{self, BackendKind, Task, TrainBackend};
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
    let tokenizer = crate::model_arg::load_tokenizer(&args.model)?;
    let model_format = model_chat(&args.model, &tokenizer)?;
    let (prompts, is_chat) = read_prompts(
        &args.prompts,
        args.skip_bad,
        &tokenizer,
        model_format.as_ref(),
    )?;
    let eval_prompts = match &args.eval_prompts {
        Some(path) => {
            let (prompts, eval_chat) =
                read_prompts(path, args.skip_bad, &tokenizer, model_format.as_ref())?;
            if eval_chat != is_chat {
                bail!("--prompts and --eval-prompts must both be plain text or both conversations");
            }
            Some(prompts)
        }
        None => None,
    };
    // Chat prompts: responses also end at the template's end-of-turn tokens.
    let chat = if is_chat { model_format } else { None };
    let config = RlConfig {
        chat_stop: chat.as_ref().map(|c| c.stop_ids().to_vec()),
        ..config
    };
    config.validate()?;
    let reward = RewardSpec::parse(&args.reward)?;
    backend::run(
        backend_kind,
        Rl {
            args,
            config,
            prompts,
            eval_prompts,
            reward,
            tokenizer,
            chat,
        },
    )
}

struct Rl {
    args: RlArgs,
    config: RlConfig,
    prompts: Vec<Vec<u32>>,
    eval_prompts: Option<Vec<Vec<u32>>>,
    reward: RewardSpec,
    tokenizer: ModelTokenizer,
    chat: Option<ChatFormat>,
}

impl Task for Rl {
    type Output = ();

    fn run<B: TrainBackend>(self, device: B::Device) -> Result<()> {
        self.train::<Autodiff<B>>(device)
    }
}

/// Reward and KL of the current policy on the held-out prompts (if any), recorded at `step`.
fn held_out<B: AutodiffBackend>(
    trainer: &RlTrainer<B>,
    prompts: Option<&[Vec<u32>]>,
    samples: usize,
    reward: &mut dyn RewardFn,
    log: &mut AlignLog,
    step: usize,
) -> Result<Option<RewardEval>> {
    let Some(prompts) = prompts else {
        return Ok(None);
    };
    let config = RewardEvalConfig {
        samples,
        ..RewardEvalConfig::default()
    };
    let policy = trainer.model().valid().policy;
    let r = evaluate_reward(
        &policy,
        trainer.reference(),
        prompts,
        reward,
        trainer.rollout_config(),
        &config,
    )?;
    let values = [
        ("eval/reward_mean", r.reward_mean),
        ("eval/reward_std", r.reward_std),
        ("eval/kl_mean", r.kl_mean),
    ];
    log.record(trainer.config().algo.name(), step, &values)?;
    Ok(Some(r))
}

/// Prints the last iteration's figures and the held-out ones.
fn report(
    json_out: bool,
    last: &[(&str, f64)],
    evals: (Option<RewardEval>, Option<RewardEval>),
    seconds: f64,
    usage: &str,
) {
    let summary = |e: &RewardEval| json!({"reward_mean": e.reward_mean, "reward_std": e.reward_std, "kl_mean": e.kl_mean, "n": e.n});
    if json_out {
        let mut out: Map<String, Value> = last
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        if let (Some(b), Some(a)) = &evals {
            out.insert("eval/before".into(), summary(b));
            out.insert("eval/after".into(), summary(a));
        }
        out.insert("seconds".into(), json!(seconds));
        println!("{}", Value::Object(out));
        return;
    }
    if let (Some(b), Some(a)) = &evals {
        println!(
            "held-out reward {:.4} -> {:.4} (reference std {:.4}), KL {:.3} nats per sequence",
            b.reward_mean, a.reward_mean, b.reward_std, a.kl_mean
        );
    }
    println!("trained in {seconds:.0} s; {usage}");
}

impl Rl {
    fn train<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let (args, config) = (&self.args, &self.config);
        let algo = config.algo.name();
        let policy = load_model::<B>(&args.model, None, &device)?;
        let tokenizer = self.tokenizer.identity()?;
        let chat = self.chat.is_some();
        let max_tokens = self
            .eval_prompts
            .iter()
            .chain([&self.prompts])
            .map(|p| max_sequence(p, chat, config.max_prompt_tokens, config.response_tokens))
            .max()
            .unwrap_or(0);
        let mut reward = self.reward.load::<B::InnerBackend>(
            &device,
            policy.config(),
            &tokenizer,
            max_tokens,
            self.chat.as_ref(),
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
        let eval_prompts = self.eval_prompts.as_deref();
        let samples = args.eval_samples;
        let before = held_out(&trainer, eval_prompts, samples, &mut *reward, &mut log, 0)?;
        if config.normalize_reward {
            let (mean, std) = trainer.normalize_reward(&mut *reward)?;
            let values = [("env/reward_norm_mean", mean), ("env/reward_norm_std", std)];
            log.record(algo, 0, &values)?;
        }
        let mut last = Vec::new();
        for i in 0..config.iterations {
            let (stats, exp) = trainer
                .step(&mut *reward)
                .with_context(|| format!("iteration {}", i + 1))?;
            last = stats.named();
            log.record(algo, stats.iteration, &last)?;
            if i % 10 == 0 || i + 1 == config.iterations {
                let ids = [exp.prompts[0].as_slice(), &exp.responses[0]].concat();
                log.sample(stats.iteration, self.tokenizer.decode(&ids)?)?;
            }
        }
        let step = config.iterations;
        let after = held_out(
            &trainer,
            eval_prompts,
            samples,
            &mut *reward,
            &mut log,
            step,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let usage = save_policy(&trainer.into_policy(), &args.out, &args.model)?;
        report(args.json, &last, (before, after), seconds, &usage);
        Ok(())
    }
}
