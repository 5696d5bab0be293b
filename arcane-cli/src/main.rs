//! `arcane-cli`: train, sample, evaluate and benchmark GPT-2-class models.
//!
//! Arguments are parsed into typed configs (`cli.rs`), the backend is chosen at run time
//! (`backend.rs`), and each subcommand lives in its own file under `commands/`.

mod allocator;
mod backend;
mod cli;
mod commands;
mod kernel_cache;
mod model_arg;
mod progress;

use clap::Parser;

fn main() {
    allocator::tune_for_tensors();
    let cli = cli::Cli::parse();
    if let Err(error) = commands::run(cli) {
        // `{:#}` prints the whole context chain on one line: "loading model: file: reason".
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
