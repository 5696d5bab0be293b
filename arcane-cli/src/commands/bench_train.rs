//! `arcane-cli bench train`: full optimizer steps on random tokens, as the training loop runs
//! them (forward, backward, global-norm clipping, AdamW), with an optional phase breakdown.

use std::time::Instant;

use anyhow::Result;
use arcane::kernels::recompute;
use arcane::training::{clip_global_norm, lm_loss, GroupedAdamW, LmBatch, OptimizerConfig};
use arcane::Gpt;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::Value;

use super::bench::{Bench, Phases};

impl Bench {
    /// Optimizer steps on random tokens: forward, backward, global-norm clipping, AdamW.
    pub(super) fn train<B: AutodiffBackend>(self, device: B::Device) -> Result<Value> {
        let c = &self.config;
        let t = self.seq_len()?;
        let b = self.args.batch;
        B::seed(&device, 0);
        let mut model: Gpt<B> = self.model(&device)?;
        let mut optim = GroupedAdamW::new(&OptimizerConfig::default(), &model);
        let ids: Vec<u32> = (0..b * (t + 1))
            .map(|i| ((i * 7919 + 13) % c.vocab_size) as u32)
            .collect();
        let batch = arcane::data::Batch {
            tokens: ids,
            batch_size: b,
            seq_len: t,
        };
        let profile = self.args.profile;
        let checkpointing = self.args.activation_checkpointing;
        let mut phases = Phases::new(&["forward", "backward", "clip", "optimizer"]);
        let mut step = |phases: Option<&mut Phases>| {
            let start = Instant::now();
            let mut marks = Vec::with_capacity(4);
            let mark = |marks: &mut Vec<Instant>| {
                if profile {
                    let _ = B::sync(&device);
                }
                marks.push(Instant::now());
            };
            // The training loop's step (`TrainStep for Gpt`), in its parts.
            let batch = LmBatch::<B>::new(&batch, 1.0, &device);
            let forward = || lm_loss(&model, batch.inputs, batch.targets);
            let (loss, tape) = if checkpointing {
                let (loss, tape) = recompute::record(forward);
                (loss, Some(tape))
            } else {
                (forward(), None)
            };
            mark(&mut marks);
            let mut grads = match tape {
                Some(tape) => tape.backward(loss.clone(), &model),
                None => GradientsParams::from_grads(loss.backward(), &model),
            };
            mark(&mut marks);
            clip_global_norm(&model, &mut grads, 1.0);
            mark(&mut marks);
            model = optim.step(1e-4, model.clone(), grads);
            mark(&mut marks);
            // Reading the loss waits for the whole step on asynchronous backends.
            std::hint::black_box(loss.into_scalar().elem::<f32>());
            if let Some(phases) = phases {
                let mut last = start;
                phases.push(
                    marks
                        .iter()
                        .map(|m| {
                            let s = (*m - last).as_secs_f64();
                            last = *m;
                            s
                        })
                        .collect(),
                );
            }
            start.elapsed().as_secs_f64()
        };
        step(None); // warm-up
        let seconds: Vec<f64> = (0..self.args.repeats)
            .map(|_| step(Some(&mut phases)))
            .collect();
        let phases = profile.then_some(&phases);
        Ok(self.result("train", b, t, b * t, c.flops_per_token(t), seconds, phases))
    }
}
