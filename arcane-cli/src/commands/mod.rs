//! One file per subcommand; each parses nothing itself and does its work in `run`.

mod bench;
mod bench_train;
mod chat;
mod convert;
mod dpo;
mod eval_hellaswag;
mod eval_loss;
mod eval_reward;
mod eval_suite;
mod eval_task;
mod finetune;
mod generate;
mod info;
mod lora;
mod plot;
mod ppo;
mod prepare;
mod reward_eval;
mod reward_train;
mod sft;
mod train;

use anyhow::Result;

use arcane::align::Algo;
use arcane::eval::tasks::Task;

use crate::cli::{Cli, Command, EvalCommand, LoraCommand};
use crate::cli_align::RewardCommand;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let backend = cli.backend;
    if backend != crate::backend::BackendKind::Cpu {
        crate::kernel_cache::configure(cli.kernel_cache.as_deref())?;
    }
    match cli.command {
        Command::Prepare(args) => prepare::run(args),
        Command::Train(args) => train::run(args, backend),
        Command::Finetune(args) => finetune::run(args, backend),
        Command::Sft(args) => sft::run(args, backend),
        Command::Lora(LoraCommand::Merge(args)) => lora::merge(args, backend),
        Command::Plot(args) => plot::run(args),
        Command::Info(args) => info::run(args),
        Command::Generate(args) => generate::run(args, backend),
        Command::Chat(args) => chat::run(args, backend),
        Command::Eval(EvalCommand::Loss(args)) => eval_loss::run(args, backend),
        Command::Eval(EvalCommand::Hellaswag(args)) => eval_hellaswag::run(args, backend),
        Command::Eval(EvalCommand::Piqa(args)) => eval_task::run(Task::Piqa, args, backend),
        Command::Eval(EvalCommand::ArcEasy(args)) => eval_task::run(Task::ArcEasy, args, backend),
        Command::Eval(EvalCommand::ArcChallenge(args)) => {
            eval_task::run(Task::ArcChallenge, args, backend)
        }
        Command::Eval(EvalCommand::Winogrande(args)) => {
            eval_task::run(Task::Winogrande, args, backend)
        }
        Command::Eval(EvalCommand::Lambada(args)) => eval_task::run(Task::Lambada, args, backend),
        Command::Eval(EvalCommand::Mmlu(args)) => eval_task::run(Task::Mmlu, args, backend),
        Command::Eval(EvalCommand::Suite(args)) => eval_suite::run(args, backend),
        Command::Bench(args) => bench::run(args, backend),
        Command::Convert(args) => convert::run(args, backend),
        Command::Reward(RewardCommand::Train(args)) => reward_train::run(args, backend),
        Command::Reward(RewardCommand::Eval(args)) => reward_eval::run(args, backend),
        Command::Eval(EvalCommand::Reward(args)) => eval_reward::run(args, backend),
        Command::Dpo(args) => dpo::run(args, backend),
        Command::Ppo(args) => ppo::run(args, None, backend),
        Command::Rloo(args) => ppo::run(args, Some(Algo::Rloo), backend),
    }
}
