//! Model files: Hugging Face and Arcane round trips, and clear errors for bad files.

mod common;

use std::collections::HashMap;
use std::path::Path;

use arcane::pretrained::{load_hf, save_hf, HfArchitecture};
use arcane::weights::{collect, read_safetensors, write_safetensors, HostTensor, NamedTensors};
use arcane::{load_model, save_model, Gpt, ModelConfig};
use common::*;

fn load(dir: &Path) -> arcane::Result<Gpt<TestBackend>> {
    load_model::<TestBackend>(dir, &Default::default())
}

/// A copy of a fixture directory whose safetensors file is rewritten by `edit`.
fn edited_copy(name: &str, edit: impl FnOnce(&mut NamedTensors)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture(name).join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let mut tensors = read_safetensors(&[fixture(name).join("model.safetensors")]).unwrap();
    edit(&mut tensors);
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &tensors,
        HashMap::new(),
    )
    .unwrap();
    dir
}

fn error_of(dir: &Path) -> String {
    load(dir).err().expect("loading should fail").to_string()
}

#[test]
fn hugging_face_round_trip_is_lossless() {
    for (name, arch) in [
        ("gpt2", HfArchitecture::Gpt2),
        ("llama", HfArchitecture::Llama),
    ] {
        let original = read_safetensors(&[fixture(name).join("model.safetensors")]).unwrap();
        let model = load(&fixture(name)).unwrap();
        let out = tempfile::tempdir().unwrap();
        assert_eq!(save_hf(&model, out.path()).unwrap(), arch);
        // The file transformers would read holds exactly the original tensors, names included.
        let exported = read_safetensors(&[out.path().join("model.safetensors")]).unwrap();
        assert_eq!(
            exported, original,
            "{name}: exported tensors differ from the original file"
        );
        let (_, config) =
            arcane::pretrained::read_hf_config(&out.path().join("config.json")).unwrap();
        assert_eq!(&config, model.config());
        let reloaded = load_hf::<TestBackend>(out.path(), &Default::default()).unwrap();
        assert_eq!(collect(&reloaded), collect(&model));
    }
}

#[test]
fn arcane_round_trip_is_lossless() {
    let model = load(&fixture("llama")).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_model(&model, out.path()).unwrap();
    let reloaded = load(out.path()).unwrap();
    assert_eq!(reloaded.config(), model.config());
    assert_eq!(collect(&reloaded), collect(&model));
}

#[test]
fn gpt2_keys_load_with_or_without_the_transformer_prefix() {
    let bare = edited_copy("gpt2", |t| {
        *t = std::mem::take(t)
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
            .collect();
    });
    let a = load(&fixture("gpt2")).unwrap();
    let b = load(bare.path()).unwrap();
    assert_eq!(collect(&a), collect(&b));
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let dir = edited_copy("llama", |t| {
        t.remove("model.layers.1.self_attn.k_proj.weight");
    });
    let err = error_of(dir.path());
    assert!(
        err.contains("model.layers.1.self_attn.k_proj.weight") && err.contains("missing"),
        "{err}"
    );

    let dir = edited_copy("llama", |t| {
        t.insert(
            "model.norm.weight".into(),
            HostTensor {
                shape: vec![31],
                values: vec![0.0; 31],
            },
        );
    });
    let err = error_of(dir.path());
    assert!(
        err.contains("model.norm.weight") && err.contains("[31]") && err.contains("[32]"),
        "{err}"
    );

    let dir = edited_copy("llama", |t| {
        t.insert(
            "model.layers.0.self_attn.rotary_extra".into(),
            HostTensor {
                shape: vec![1],
                values: vec![0.0],
            },
        );
    });
    assert!(error_of(dir.path()).contains("rotary_extra"));
}

#[test]
fn integer_tensors_are_a_dtype_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("llama/config.json"), dir.path().join("config.json")).unwrap();
    let data = 7i64.to_le_bytes().to_vec();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1], &data).unwrap();
    let bytes = safetensors::serialize(vec![("model.norm.weight", view)], None).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    let err = error_of(dir.path());
    assert!(
        err.contains("model.norm.weight") && err.contains("I64"),
        "{err}"
    );
}

#[test]
fn unknown_architectures_and_broken_files_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "bert", "architectures": ["BertModel"]}"#,
    )
    .unwrap();
    let err = error_of(dir.path());
    assert!(
        err.contains("unsupported architecture") && err.contains("GPT2LMHeadModel"),
        "{err}"
    );

    let dir = edited_copy("gpt2", |_| {});
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert!(error_of(dir.path()).contains("not a valid safetensors file"));

    std::fs::remove_file(&file).unwrap();
    assert!(error_of(dir.path()).contains("no safetensors weights"));

    // A sharded index that names no files, or files outside the folder.
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, r#"{"metadata": {}, "weight_map": {}}"#).unwrap();
    assert!(error_of(dir.path()).contains("names no files"));
    std::fs::write(&index, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
    assert!(error_of(dir.path()).contains("not a file name in this folder"));

    assert!(error_of(Path::new("/no/such/model")).contains("no such model directory"));
    let empty = tempfile::tempdir().unwrap();
    assert!(error_of(empty.path()).contains("not a model directory"));
}

#[test]
fn arcane_manifests_are_versioned() {
    let model = ModelConfig::tiny()
        .init::<TestBackend>(&Default::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_model(&model, dir.path()).unwrap();
    let manifest = dir.path().join("arcane.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"version\": 1", "\"version\": 99")).unwrap();
    assert!(error_of(dir.path()).contains("version 99 is not supported"));
    std::fs::write(&manifest, "{ not json").unwrap();
    assert!(error_of(dir.path()).contains("corrupt Arcane model manifest"));
}

#[test]
fn a_model_with_no_hugging_face_equivalent_is_refused_for_export() {
    let config = ModelConfig {
        positions: arcane::model::PositionEncoding::Rope,
        ..ModelConfig::tiny()
    };
    let model = config.init::<TestBackend>(&Default::default()).unwrap();
    let err = save_hf(&model, tempfile::tempdir().unwrap().path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Hugging Face equivalent"), "{err}");
}
