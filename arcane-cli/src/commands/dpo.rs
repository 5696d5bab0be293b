//! `arcane-cli dpo`: Direct Preference Optimization on preference pairs, full or LoRA; the
//! reference is the starting model, its log-probabilities computed once up front. Pairs may be
//! plain text or conversations, rendered with the model's chat template.

use std::time::Instant;

use anyhow::{Context, Result};
use arcane::align::{train_dpo, AlignLog, DpoConfig, DpoLossKind, OptimSettings, TokenPair};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Map, Value};

use crate::align_args::{
    lora_config, model_chat, note_long_pairs, progress, read_pairs, save_policy, start_run,
};
use crate::backend::{self, BackendKind, Task, TrainBackend};
use crate::cli_align::DpoArgs;
use crate::model_arg::{load_model, load_tokenizer};

/// Reads the pairs and the flags, then trains on the chosen backend.
pub fn run(args: DpoArgs, backend_kind: BackendKind) -> Result<()> {
    let loss: DpoLossKind = args.loss.parse()?;
    let tokenizer = load_tokenizer(&args.model)?;
    let config = DpoConfig {
        beta: args.beta,
        loss,
        label_smoothing: args.label_smoothing,
        epochs: args.epochs,
        max_steps: args.max_steps,
        batch_pairs: args.batch,
        optim: OptimSettings {
            lr: args.lr,
            min_lr_ratio: 0.1,
            ..OptimSettings::default()
        },
        lora: lora_config(&args.lora)?,
        seed: args.seed,
        eval_every: args.eval_every,
        // Every id of the tokenizer is scored (Arcane's ChatML adds two past GPT-2's).
        vocab_limit: Some(tokenizer.vocab_size()),
    };
    config.validate()?;
    let chat = model_chat(&args.model, &tokenizer)?;
    let (train, _) = read_pairs(
        &args.pairs.data,
        args.pairs.skip_bad,
        &tokenizer,
        chat.as_ref(),
    )?;
    let eval = match &args.eval_data {
        Some(path) => read_pairs(path, args.pairs.skip_bad, &tokenizer, chat.as_ref())?.0,
        None => Vec::new(),
    };
    backend::run(
        backend_kind,
        Dpo {
            args,
            config,
            train,
            eval,
        },
    )
}

struct Dpo {
    args: DpoArgs,
    config: DpoConfig,
    train: Vec<TokenPair>,
    eval: Vec<TokenPair>,
}

impl Task for Dpo {
    type Output = ();

    fn run<B: TrainBackend>(self, device: B::Device) -> Result<()> {
        self.train::<Autodiff<B>>(device)
    }
}

impl Dpo {
    fn train<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let (args, config) = (&self.args, &self.config);
        let policy = load_model::<B>(&args.model, None, &device)?;
        note_long_pairs(&self.train, policy.config().max_seq_len, "training");
        let inputs = [("data", args.pairs.data.as_path())];
        let metrics = start_run(&args.out, "dpo", &args.model, &inputs, config)?;
        let mut log = AlignLog::new(Some(metrics), progress(10));
        eprintln!(
            "DPO ({:?}, beta {}) on {} with {} pairs -> {}",
            config.loss,
            config.beta,
            args.model.display(),
            self.train.len(),
            args.out.display()
        );
        let start = Instant::now();
        let (policy, held_out) = train_dpo(policy, &self.train, &self.eval, config, &mut log)
            .context("training with DPO")?;
        let seconds = start.elapsed().as_secs_f64();
        let usage = save_policy(&policy, &args.out, &args.model)?;
        if args.json {
            let mut out: Map<String, Value> = held_out
                .map(|s| {
                    let mut m: Map<String, Value> = s
                        .named("eval/")
                        .into_iter()
                        .map(|(k, v)| (k, v.into()))
                        .collect();
                    m.insert("n".into(), s.n.into());
                    m
                })
                .unwrap_or_default();
            out.insert("seconds".into(), json!(seconds));
            println!("{}", Value::Object(out));
        } else {
            if let Some(s) = held_out {
                println!(
                    "held-out preference accuracy {:.4} over {} pairs, margin {:.3}, loss {:.4}",
                    s.accuracies, s.n, s.margins, s.loss
                );
            }
            println!("trained in {seconds:.0} s; {usage}");
        }
        Ok(())
    }
}
