//! `eval hellaswag` on wgpu (bucketed shapes, padded rows) against the CPU (exact shapes).

use arcane::eval::{load_hellaswag, score_hellaswag};
use arcane::shapes::FixedShapes;

use super::*;

/// Summed and mean losses per ending: f32 on both sides, 1e-4 relative.
const LOSS_TOL: f64 = 1e-4;

#[test]
fn hellaswag_predictions_match_the_cpu() {
    let (examples, _) = load_hellaswag(&fixture("hellaswag.jsonl"), false).unwrap();
    let cpu_model = load::<Cpu>("gpt2", &Default::default());
    let gpu_model = load::<Gpu>("gpt2", &gpu());
    let cpu = score_hellaswag(&cpu_model, &examples, 3, FixedShapes::EXACT, |_| {}).unwrap();
    // Batches of 3 over 8 examples: the last batch is padded to 3 (12 rows), and every row
    // length is rounded to the 64-token bucket, as the CLI does on a GPU.
    let gpu = score_hellaswag(&gpu_model, &examples, 3, FixedShapes::BUCKETED, |_| {}).unwrap();
    assert_eq!(gpu.len(), cpu.len());
    let mut worst = 0f64;
    for (g, c) in gpu.iter().zip(&cpu) {
        assert_eq!(g.ind, c.ind);
        for (a, b) in g
            .sum_losses
            .iter()
            .zip(&c.sum_losses)
            .chain(g.mean_losses.iter().zip(&c.mean_losses))
        {
            let rel = (a - b).abs() / b.abs().max(1e-6);
            worst = worst.max(rel);
            assert!(
                rel < LOSS_TOL,
                "example {}: ending loss {a} on wgpu, {b} on the CPU",
                c.ind
            );
        }
        assert_eq!(
            (g.pred, g.pred_norm),
            (c.pred, c.pred_norm),
            "example {}: wgpu predicts differently (losses {:?} vs {:?})",
            c.ind,
            g.sum_losses,
            c.sum_losses
        );
    }
    eprintln!(
        "hellaswag: {} predictions equal the CPU's; worst relative loss difference {worst:.2e} (tolerance {LOSS_TOL:.0e})",
        gpu.len()
    );
}
