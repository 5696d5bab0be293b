//! `arcane-cli reward train`: a reward model from preference pairs (Bradley-Terry loss), full
//! or LoRA; the output folder is a loadable reward model. Conversational pairs are rendered
//! with the model's chat template, which the reward model then records (`reward_chat.json`).

use std::time::Instant;

use anyhow::{Context, Result};
use arcane::align::{
    save_reward_chat, save_reward_model, train_reward_model, AlignLog, ChatFormat, OptimSettings,
    RewardConfig, TokenPair,
};
use arcane::ModelTokenizer;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;

use crate::align_args::{
    lora_config, model_chat, note_long_pairs, progress, read_pairs, start_run,
};
use crate::backend::{self, BackendKind, Task, TrainBackend};
use crate::cli_align::RewardTrainArgs;
use crate::model_arg::{load_model, load_tokenizer};

/// Reads the pairs, then trains on the chosen backend.
pub fn run(args: RewardTrainArgs, backend_kind: BackendKind) -> Result<()> {
    let tokenizer = load_tokenizer(&args.model)?;
    let model_format = model_chat(&args.model, &tokenizer)?;
    let (train, is_chat) = read_pairs(
        &args.pairs.data,
        args.pairs.skip_bad,
        &tokenizer,
        model_format.as_ref(),
    )?;
    let eval = match &args.eval_data {
        Some(path) => read_pairs(path, args.pairs.skip_bad, &tokenizer, model_format.as_ref())?.0,
        None => Vec::new(),
    };
    // The reward model records the format it learnt, for the policies it will score.
    let chat = if is_chat { model_format } else { None };
    let config = RewardConfig {
        epochs: args.epochs,
        max_steps: args.max_steps,
        batch_pairs: args.batch,
        optim: OptimSettings {
            lr: args.lr,
            min_lr_ratio: 0.1,
            ..OptimSettings::default()
        },
        use_margin: args.margin,
        center_rewards: args.center_rewards,
        lora: lora_config(&args.lora)?,
        seed: args.seed,
        eval_every: args.eval_every,
    };
    backend::run(
        backend_kind,
        RewardTrain {
            args,
            config,
            train,
            eval,
            tokenizer,
            chat,
        },
    )
}

struct RewardTrain {
    args: RewardTrainArgs,
    config: RewardConfig,
    train: Vec<TokenPair>,
    eval: Vec<TokenPair>,
    tokenizer: ModelTokenizer,
    chat: Option<ChatFormat>,
}

impl Task for RewardTrain {
    type Output = ();

    fn run<B: TrainBackend>(self, device: B::Device) -> Result<()> {
        self.train::<Autodiff<B>>(device)
    }
}

impl RewardTrain {
    fn train<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let (args, config) = (&self.args, &self.config);
        let base = load_model::<B>(&args.model, None, &device)?;
        note_long_pairs(&self.train, base.config().max_seq_len, "training");
        let inputs = [("data", args.pairs.data.as_path())];
        let metrics = start_run(&args.out, "reward", &args.model, &inputs, config)?;
        let mut log = AlignLog::new(Some(metrics), progress(10));
        eprintln!(
            "training a reward model on {} ({} pairs, {}) -> {}",
            args.model.display(),
            self.train.len(),
            match &config.lora {
                Some(l) => format!("LoRA rank {}", l.rank),
                None => "full fine-tuning".into(),
            },
            args.out.display()
        );
        let start = Instant::now();
        let (model, held_out) = train_reward_model(base, &self.train, &self.eval, config, &mut log)
            .context("training the reward model")?;
        let seconds = start.elapsed().as_secs_f64();
        save_reward_model(
            model.valid(),
            &args.out,
            &args.model.display().to_string(),
            &self.tokenizer,
        )
        .with_context(|| format!("writing the reward model to {}", args.out.display()))?;
        save_reward_chat(&args.out, self.chat.as_ref())?;
        match (args.json, held_out) {
            (true, Some(s)) => println!(
                "{}",
                json!({"accuracy": s.accuracy, "n": s.n, "margin_mean": s.margin_mean, "loss": s.loss, "seconds": seconds})
            ),
            (true, None) => println!("{}", json!({"seconds": seconds})),
            (false, Some(s)) => println!(
                "held-out accuracy {:.4} over {} pairs, mean margin {:.3}, loss {:.4} ({seconds:.0} s); the reward model is in {}",
                s.accuracy, s.n, s.margin_mean, s.loss, args.out.display()
            ),
            (false, None) => println!("trained in {seconds:.0} s; the reward model is in {}", args.out.display()),
        }
        Ok(())
    }
}
