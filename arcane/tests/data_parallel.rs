//! Data parallelism: splitting each step's micro-batches over two devices computes what one
//! device computes (here two handles on the CPU, which exercises the whole code path).

mod common;

use std::path::Path;

use arcane::data::write_shard;
use arcane::training::{
    read_metrics, train, train_data_parallel, MetricRecord, TrainOptions, TrainingConfig,
};
use arcane::ModelConfig;
use common::*;

fn dataset(dir: &Path) {
    let tokens: Vec<u16> = (0..20_000u32)
        .map(|i| ((i * 7 + i / 13) % 256) as u16)
        .collect();
    write_shard(&dir.join("train_000000.bin"), &tokens[..18_000]).unwrap();
    write_shard(&dir.join("val_000000.bin"), &tokens[18_000..]).unwrap();
}

fn config() -> TrainingConfig {
    TrainingConfig {
        model: ModelConfig {
            max_seq_len: 32,
            ..ModelConfig::tiny()
        },
        micro_batch: 2,
        tokens_per_step: 2 * 2 * 32,
        max_steps: 4,
        eval_every: 2,
        eval_tokens: 128,
        checkpoint_every: 4,
        sample_tokens: 0,
        ..TrainingConfig::tiny_cpu()
    }
}

fn losses(run: &Path) -> Vec<f64> {
    read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            MetricRecord::Train { loss, .. } => Some(loss),
            _ => None,
        })
        .collect()
}

#[test]
fn two_devices_compute_what_one_device_computes() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let options = |name: &str| {
        let mut o = TrainOptions::<TestAutodiff>::new(tmp.path().join(name), tmp.path());
        o.dashboard = Some(false);
        o
    };
    let device: burn::tensor::Device<TestAutodiff> = Default::default();
    train(config(), options("one"), device.clone()).unwrap();
    train_data_parallel(config(), options("two"), vec![device.clone(), device]).unwrap();
    let (one, two) = (
        losses(&tmp.path().join("one")),
        losses(&tmp.path().join("two")),
    );
    assert_eq!(one.len(), 4);
    for (a, b) in one.iter().zip(&two) {
        assert!((a - b).abs() < 1e-5, "one device {a}, two devices {b}");
    }
    let read = |name: &str| {
        arcane::weights::read_safetensors(&[tmp.path().join(name).join("model.safetensors")])
            .unwrap()
    };
    let (a, b) = (read("one"), read("two"));
    for (name, t) in &a {
        let diff = max_abs_diff(&t.values, &b[name].values);
        assert!(diff < 1e-5, "{name}: weights differ by {diff}");
    }
}
