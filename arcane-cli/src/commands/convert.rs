//! `arcane-cli convert`: rewrite a model directory in the Arcane or Hugging Face format.

use anyhow::{Context, Result};
use burn::prelude::*;

use crate::backend::{self, BackendKind, Task};
use crate::cli::{ConvertArgs, ModelFormat};
use crate::model_arg::load_model;

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
        let out = args.out.display();
        match args.format {
            ModelFormat::Arcane => {
                arcane::save_model(&model, &args.out).with_context(|| format!("writing {out}"))?;
                println!("wrote Arcane model to {out}");
            }
            ModelFormat::Hf => {
                let arch = arcane::pretrained::save_hf(&model, &args.out)
                    .with_context(|| format!("writing {out}"))?;
                println!("wrote {} to {out}", arch.class_name());
            }
        }
        Ok(())
    }
}
