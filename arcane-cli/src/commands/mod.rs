//! One file per subcommand; each parses nothing itself and does its work in `run`.

mod bench;
mod convert;
mod eval_loss;
mod generate;
mod info;

use anyhow::Result;

use crate::cli::{Cli, Command, EvalCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let backend = cli.backend;
    match cli.command {
        Command::Info(args) => info::run(args),
        Command::Generate(args) => generate::run(args, backend),
        Command::Eval(EvalCommand::Loss(args)) => eval_loss::run(args, backend),
        Command::Bench(args) => bench::run(args, backend),
        Command::Convert(args) => convert::run(args, backend),
    }
}
