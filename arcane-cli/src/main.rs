//! `arcane-cli`: train, sample, evaluate and benchmark GPT-2-class models.
//!
//! Arguments are parsed into typed configs (`cli.rs`), the backend is chosen at run time
//! (`backend.rs`), and each subcommand lives in its own file under `commands/`.

mod align_args;
mod allocator;
mod backend;
mod cli;
mod cli_align;
mod cli_eval;
mod cli_sft;
mod commands;
mod hub_model;
mod kernel_cache;
mod model_arg;
mod precision_args;
mod progress;
mod sampling_args;
mod signals;

use clap::Parser;

fn main() {
    allocator::tune_for_tensors();
    let cli = cli::Cli::parse();
    if let Err(error) = commands::run(cli) {
        // A run stopped by SIGINT / SIGTERM after its checkpoint: 130 / 143, as shells expect.
        if let Some(stopped) = error.downcast_ref::<signals::Stopped>() {
            eprintln!("{stopped}");
            std::process::exit(stopped.exit_code());
        }
        // `{:#}` prints the whole context chain on one line: "loading model: file: reason".
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
