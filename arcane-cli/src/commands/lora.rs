//! `arcane-cli lora merge`: fold a trained adapter into its base model and write a plain model.

use anyhow::Result;
use burn::prelude::*;

use crate::backend::{self, BackendKind, Task};
use crate::cli::LoraMergeArgs;
use crate::model_arg::{load_model, save_as};

/// Loads base and adapter, merges, and writes the result in the chosen format.
pub fn merge(args: LoraMergeArgs, backend: BackendKind) -> Result<()> {
    backend::run(backend, Merge(args))
}

struct Merge(LoraMergeArgs);

impl Task for Merge {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let model = load_model::<B>(&args.model, Some(&args.adapter), &device)?;
        let merged = arcane::lora::merge_and_unload(model);
        save_as(&merged, &args.model, &args.out, args.format)?;
        let out = args.out.display();
        println!(
            "merged {} into {} and wrote {out}",
            args.adapter.display(),
            args.model.display()
        );
        Ok(())
    }
}
