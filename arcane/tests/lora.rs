//! LoRA: a fresh adapter changes nothing, only adapters train, merge and unmerge agree, and
//! adapter files restore the fine-tuned model exactly.

mod common;

use arcane::data::Batch;
use arcane::lora::{
    apply_lora, load_adapter, merge, merge_and_unload, parameter_counts, save_adapter, unmerge,
    LoraConfig, LoraTarget,
};
use arcane::training::{clip_global_norm, GroupedAdamW, LmBatch, OptimizerConfig};
use arcane::weights::collect;
use arcane::{load_model, save_model, Gpt};
use burn::optim::Optimizer;
use burn::train::TrainStep;
use common::*;

type AD = TestAutodiff;

fn llama<B: burn::prelude::Backend>() -> Gpt<B> {
    load_model::<B>(&fixture("llama"), &Default::default()).unwrap()
}

fn all_targets(rank: usize) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        dropout: 0.0,
        targets: LoraTarget::ALL.to_vec(),
    }
}

fn logits<B: burn::prelude::Backend>(model: &Gpt<B>) -> Vec<f32> {
    let seq: Vec<u32> = (0..20).map(|t| (t * 29 + 3) % 512).collect();
    values(model.forward(tokens(&seq, &model.device())))
}

/// A few optimizer steps on a fixed batch; returns the trained model.
fn fine_tune(model: Gpt<AD>, steps: usize) -> Gpt<AD> {
    let tokens: Vec<u32> = (0..4 * 33).map(|i| (i * 37 % 500) as u32).collect();
    let batch = Batch {
        tokens,
        batch_size: 4,
        seq_len: 32,
    };
    let mut optim = GroupedAdamW::new(
        &OptimizerConfig {
            weight_decay: 0.1,
            ..OptimizerConfig::default()
        },
        &model,
    );
    let mut model = model;
    for _ in 0..steps {
        let mut grads =
            TrainStep::step(&model, LmBatch::<AD>::new(&batch, 1.0, &Default::default())).grads;
        clip_global_norm(&model, &mut grads, 1.0);
        model = optim.step(1e-2, model, grads);
    }
    model
}

#[test]
fn a_fresh_adapter_changes_nothing() {
    let base = llama::<TestBackend>();
    let before = logits(&base);
    let adapted = apply_lora(base, &all_targets(4)).unwrap();
    assert_eq!(logits(&adapted), before);
    let (trainable, total) = parameter_counts(&adapted);
    // Each adapter has r·(in + out) parameters: q and o are 32x32, k and v 32x16 (two of four
    // heads of 8), fc, gate and proj 32x48; 2 layers, plus the 32x512 head.
    let per_layer = 2 * 4 * (32 + 32) + 2 * 4 * (32 + 16) + 3 * 4 * (32 + 48);
    assert_eq!(trainable, 2 * per_layer + 4 * (32 + 512));
    assert_eq!(trainable, all_targets(4).trainable_params(adapted.config()));
    assert_eq!(total, adapted.config().num_params() + trainable);
}

#[test]
fn only_the_adapters_train() {
    let base = llama::<AD>();
    let frozen = collect(&base);
    let tuned = fine_tune(
        apply_lora(
            base,
            &LoraConfig {
                rank: 4,
                ..LoraConfig::default()
            },
        )
        .unwrap(),
        5,
    );
    let after = collect(&tuned);
    for (name, t) in &frozen {
        assert_eq!(&after[name], t, "{name} changed although it is frozen");
    }
    let b = &after["blocks.0.attn.q.lora.b"];
    assert!(b.values.iter().any(|&x| x != 0.0), "the adapter trained");
    assert!(
        !after.contains_key("blocks.0.attn.v.lora.b"),
        "v was not a target"
    );
}

#[test]
fn merged_and_unmerged_models_agree() {
    let tuned = fine_tune(apply_lora(llama::<AD>(), &all_targets(4)).unwrap(), 5);
    let tuned: Gpt<TestBackend> = burn::module::AutodiffModule::valid(&tuned);
    let base = collect(&llama::<TestBackend>());
    let unmerged = logits(&tuned);
    assert!(
        max_abs_diff(&unmerged, &logits(&llama::<TestBackend>())) > 1e-3,
        "the adapters matter"
    );
    let merged = merge(tuned);
    let diff = max_abs_diff(&unmerged, &logits(&merged));
    assert!(diff < 1e-5, "merged logits differ by {diff}");
    let restored = unmerge(merged);
    assert!(max_abs_diff(&unmerged, &logits(&restored)) < 1e-5);
    for (name, t) in collect(&restored)
        .iter()
        .filter(|(n, _)| !n.contains(".lora."))
    {
        let diff = max_abs_diff(&t.values, &base[name].values);
        assert!(diff < 1e-6, "{name}: unmerge leaves {diff}");
    }
    // Merged away, the model is a plain one that saves and reloads in the Arcane format.
    let plain = merge_and_unload(restored);
    let dir = tempfile::tempdir().unwrap();
    save_model(&plain, dir.path()).unwrap();
    let reloaded = load_model::<TestBackend>(dir.path(), &Default::default()).unwrap();
    assert!(max_abs_diff(&unmerged, &logits(&reloaded)) < 1e-5);
}

#[test]
fn adapter_files_restore_the_fine_tuned_model() {
    let tuned = fine_tune(
        apply_lora(
            llama::<AD>(),
            &LoraConfig {
                rank: 2,
                ..LoraConfig::default()
            },
        )
        .unwrap(),
        3,
    );
    let tuned: Gpt<TestBackend> = burn::module::AutodiffModule::valid(&tuned);
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&tuned, dir.path(), "tests/fixtures/llama").unwrap();
    let restored = load_adapter(llama::<TestBackend>(), dir.path()).unwrap();
    assert_eq!(logits(&restored), logits(&tuned));
    let adapter = std::fs::metadata(dir.path().join("adapter.safetensors"))
        .unwrap()
        .len();
    let base = std::fs::metadata(fixture("llama/model.safetensors"))
        .unwrap()
        .len();
    assert!(
        adapter * 20 < base,
        "adapter {adapter} bytes vs base {base}"
    );
    // A model with adapters is not saved as a plain model by mistake.
    let err = save_model(&tuned, tempfile::tempdir().unwrap().path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("LoRA adapters"), "{err}");
}

#[test]
fn bad_adapters_and_settings_are_refused() {
    let tuned = apply_lora(llama::<TestBackend>(), &LoraConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&tuned, dir.path(), "llama").unwrap();
    let other = arcane::ModelConfig {
        n_layers: 1,
        ..llama::<TestBackend>().config().clone()
    }
    .init::<TestBackend>(&Default::default())
    .unwrap();
    let err = load_adapter(other, dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("another base model") && err.contains("n_layers"),
        "{err}"
    );
    assert!(apply_lora(
        llama::<TestBackend>(),
        &LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        }
    )
    .is_err());
    assert!("x"
        .parse::<LoraTarget>()
        .unwrap_err()
        .to_string()
        .contains("q, k, v, o, mlp, head"));
    let gpt2 = load_model::<TestBackend>(&fixture("gpt2"), &Default::default()).unwrap();
    let err = apply_lora(
        gpt2,
        &LoraConfig {
            targets: vec![LoraTarget::Head],
            ..LoraConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("untied head"), "{err}");
}
