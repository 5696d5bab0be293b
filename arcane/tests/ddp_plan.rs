//! The arithmetic of NCCL data parallelism (`DdpPlan`): how a global batch splits over `N`
//! devices, and that summing the all-reduced, scaled gradients gives the single-device
//! gradient of the global batch. The NCCL path itself needs GPUs (`scripts/gpu-check.sh`,
//! step `ddp`); this is what can be checked on the CPU.

use arcane::training::{DdpPlan, TrainingConfig};
use arcane::ModelConfig;

/// A run config with global batch `g`, micro-batch `b` and sequence length `t`.
fn config(g: usize, b: usize, t: usize) -> TrainingConfig {
    TrainingConfig {
        model: ModelConfig {
            max_seq_len: t,
            ..ModelConfig::tiny()
        },
        micro_batch: b,
        tokens_per_step: g,
        ..TrainingConfig::tiny_cpu()
    }
}

#[test]
fn the_plan_splits_the_global_batch_into_equal_shares() {
    // (G, b, T, N) -> A, micro-batches per device per step.
    let cases = [
        (524_288, 16, 1024, 1, 32), // GPT-2 124M's 0.5M-token step on one GPU
        (524_288, 16, 1024, 8, 4),  // the same step on 8 GPUs
        (524_288, 64, 1024, 8, 1),  // no accumulation left
        (256, 2, 32, 2, 2),
        (256, 2, 32, 4, 1),
        (3 * 2 * 32 * 5, 2, 32, 3, 5), // an odd device count
    ];
    for (g, b, t, n, a) in cases {
        let plan = DdpPlan::new(g, b, t, n).unwrap();
        assert_eq!(plan.accumulation, a, "G {g}, b {b}, T {t}, N {n}");
        assert_eq!(plan.micro_batches_per_step(), n * a);
        assert_eq!(plan.tokens_per_step(), g);
        assert_eq!(plan.loss_scale(), 1.0 / (n * a) as f64);
        // The same count the gathering path and the config's validation use.
        let c = config(g, b, t);
        assert_eq!(c.accumulation(n).unwrap(), a);
        assert_eq!(DdpPlan::of(&c, n).unwrap(), plan);
    }
}

#[test]
fn one_device_is_the_single_device_step() {
    let plan = DdpPlan::new(524_288, 16, 1024, 1).unwrap();
    let single = config(524_288, 16, 1024).accumulation(1).unwrap();
    assert_eq!(plan.accumulation, single);
    assert_eq!(plan.loss_scale(), 1.0 / single as f64);
    for step in 0..3 {
        for round in 0..single {
            assert_eq!(
                plan.micro_batch_index(step, 0, round),
                step * single + round
            );
        }
    }
}

#[test]
fn each_step_runs_the_single_device_micro_batches_once() {
    for n in [1, 2, 3, 4, 8] {
        let plan = DdpPlan::new(n * 3 * 2 * 16, 2, 16, n).unwrap();
        let p = plan.micro_batches_per_step();
        for step in 0..4 {
            let mut seen = vec![0usize; p];
            for rank in 0..n {
                for round in 0..plan.accumulation {
                    let k = plan.micro_batch_index(step, rank, round);
                    assert!(
                        (step * p..(step + 1) * p).contains(&k),
                        "N {n} step {step}: {k}"
                    );
                    assert_eq!(k % n, rank);
                    seen[k - step * p] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "N {n} step {step}: {seen:?}");
        }
    }
}

/// A deterministic stand-in for micro-batch `k`'s gradient (4 parameters) and mean loss.
fn micro_batch(k: usize) -> ([f64; 4], f64) {
    let x = (k as f64 * 0.618_033_988_7).fract();
    (
        [x, 1.0 - 2.0 * x, x * x - 0.3, (k % 7) as f64 * 0.25],
        3.0 + x,
    )
}

#[test]
fn the_summed_all_reduce_is_the_single_device_gradient_and_loss() {
    for n in [1, 2, 4, 8] {
        let plan = DdpPlan::new(n * 4 * 2 * 8, 2, 8, n).unwrap();
        let p = plan.micro_batches_per_step();
        let step = 2;
        // One device: the mean of the step's P micro-batch gradients and losses.
        let mut single = [0.0f64; 4];
        let mut single_loss = 0.0;
        for k in step * p..(step + 1) * p {
            let (g, l) = micro_batch(k);
            single
                .iter_mut()
                .zip(g)
                .for_each(|(s, g)| *s += g / p as f64);
            single_loss += l / p as f64;
        }
        // N ranks: each backpropagates loss_scale x its losses; every backward's gradient
        // is summed over ranks (the all-reduce) and accumulated over the rank's rounds.
        let mut reduced = [0.0f64; 4];
        let mut rank_losses = vec![0.0; n];
        for round in 0..plan.accumulation {
            for (rank, rank_loss) in rank_losses.iter_mut().enumerate() {
                let (g, l) = micro_batch(plan.micro_batch_index(step, rank, round));
                reduced
                    .iter_mut()
                    .zip(g)
                    .for_each(|(r, g)| *r += g * plan.loss_scale());
                *rank_loss += l;
            }
        }
        for (r, s) in reduced.iter().zip(single) {
            assert!((r - s).abs() < 1e-12, "N {n}: {reduced:?} vs {single:?}");
        }
        assert!((plan.mean_loss(&rank_losses) - single_loss).abs() < 1e-12);
        // A Mean all-reduce on top of the same scaling would shrink the gradient N-fold.
        if n > 1 {
            let mean_reduced = reduced[0] / n as f64;
            assert!((mean_reduced - single[0]).abs() > 1e-6, "N {n}");
        }
    }
}

#[test]
fn a_global_batch_that_does_not_split_is_refused_with_the_sizes_that_do() {
    // 4 devices x 2 sequences x 32 tokens = 256 tokens per round.
    let err = DdpPlan::new(1000, 2, 32, 4).unwrap_err().to_string();
    for part in ["1000", "4 x 2 x 32 = 256", "768", "1024"] {
        assert!(err.contains(part), "{err}");
    }
    // Smaller than one round: the smallest valid size is one round.
    let err = DdpPlan::new(128, 2, 32, 4).unwrap_err().to_string();
    assert!(err.contains("256"), "{err}");
    assert!(DdpPlan::new(0, 2, 32, 1).is_err());
    let err = DdpPlan::new(256, 2, 32, 0).unwrap_err().to_string();
    assert!(err.contains("at least one device"), "{err}");
    // The config's own check refuses the same sizes.
    assert!(config(1000, 2, 32).accumulation(4).is_err());
}
