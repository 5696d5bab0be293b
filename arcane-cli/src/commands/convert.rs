//! `arcane-cli convert`: rewrite a model directory in the Arcane or Hugging Face format.

use anyhow::Result;
use burn::prelude::*;

use crate::backend::{self, BackendKind, Task};
use crate::cli::ConvertArgs;
use crate::model_arg::{load_model, save_as};

/// Loads the model on the chosen backend and writes it in the requested format.
pub fn run(args: ConvertArgs, backend: BackendKind) -> Result<()> {
    backend::run(backend, Convert(args))
}

struct Convert(ConvertArgs);

impl Task for Convert {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let model = load_model::<B>(&args.model, None, &device)?;
        let written = save_as(&model, &args.model, &args.out, args.format, None)?;
        println!("wrote {written} to {}", args.out.display());
        Ok(())
    }
}
