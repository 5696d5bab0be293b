//! Property tests of every loader: random bytes, truncated files, flipped bytes and JSON with
//! random values must give a result or an error, never a panic or a read out of range.
//! Seeded (each case says its number), a few thousand cases per loader, seconds in CI.

mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use arcane::data::{write_shard, DataManifest, TokenData};
use arcane::eval::parse_hellaswag;
use arcane::model::ModelConfig;
use arcane::training::{read_metrics, read_state, TrainingConfig};
use arcane::ModelTokenizer;
use common::{fixture, TestBackend};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Runs `check` on `cases` inputs made by `make` from a seeded generator; a panic fails the
/// test with the case number (rerun that case by its number) and the input's length.
fn property(
    name: &str,
    seed: u64,
    cases: usize,
    make: impl Fn(&mut StdRng) -> Vec<u8>,
    check: impl Fn(&[u8]),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = std::time::Instant::now();
    for case in 0..cases {
        let input = make(&mut rng);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panic!(
                "{name}: case {case} (seed {seed}, {} bytes) panicked",
                input.len()
            );
        }
    }
    eprintln!(
        "{name}: {cases} cases in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

/// A damaged copy of `valid`: random bytes, a truncation, flipped bytes, a cut-and-splice, or
/// random bytes after a valid prefix.
fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let n = valid.len();
    match rng.random_range(0..5) {
        0 => (0..rng.random_range(0..2 * n + 16))
            .map(|_| rng.random())
            .collect(),
        1 => valid[..rng.random_range(0..n.max(1))].to_vec(),
        2 => {
            let mut out = valid.to_vec();
            for _ in 0..rng.random_range(1..9) {
                if n > 0 {
                    let i = rng.random_range(0..n);
                    out[i] = rng.random();
                }
            }
            out
        }
        3 => {
            let (a, b) = (rng.random_range(0..=n), rng.random_range(0..=n));
            let (a, b) = (a.min(b), a.max(b));
            [&valid[..a], &valid[b..]].concat()
        }
        _ => {
            let cut = rng.random_range(0..=n);
            let tail: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            [&valid[..cut], &tail[..]].concat()
        }
    }
}

/// A random JSON value of the kinds configs hold, biased to the troublesome ones.
fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(1e300),
        4 => json!(rng.random_range(0..100_000)),
        5 => json!(rng.random::<f64>() * 4.0 - 2.0),
        6 => json!("x"),
        7 => Value::Null,
        8 => json!([1, 2]),
        _ => json!({"a": 1}),
    }
}

/// `valid` JSON with some leaves replaced by random values, or some keys removed; otherwise a
/// byte-level mutation of its text.
fn mutate_json(rng: &mut StdRng, valid: &Value) -> Vec<u8> {
    if rng.random_bool(0.3) {
        return mutate(rng, valid.to_string().as_bytes());
    }
    let mut value = valid.clone();
    for _ in 0..rng.random_range(1..4) {
        mutate_node(rng, &mut value);
    }
    value.to_string().into_bytes()
}

/// Walks down a random path of `node` and replaces or removes what is there.
fn mutate_node(rng: &mut StdRng, node: &mut Value) {
    let descend = match node {
        Value::Object(map) => !map.is_empty() && rng.random_bool(0.7),
        Value::Array(items) => !items.is_empty() && rng.random_bool(0.7),
        _ => false,
    };
    match node {
        Value::Object(map) if descend => {
            let key = map
                .keys()
                .nth(rng.random_range(0..map.len()))
                .unwrap()
                .clone();
            if rng.random_bool(0.1) {
                map.remove(&key);
            } else {
                mutate_node(rng, map.get_mut(&key).unwrap());
            }
        }
        Value::Array(items) if descend => {
            let i = rng.random_range(0..items.len());
            mutate_node(rng, &mut items[i]);
        }
        _ => *node = random_value(rng),
    }
}

/// A temporary folder, in memory where the system has one (the cases write many small files).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A tiny Arcane model directory (a few kB), the base of the model-file properties.
fn tiny_model(dir: &Path) -> ModelConfig {
    let config = ModelConfig {
        vocab_size: 16,
        max_seq_len: 8,
        d_model: 8,
        n_layers: 1,
        n_heads: 2,
        mlp_hidden: Some(16),
        ..ModelConfig::arcane_124m()
    };
    let model = config.init::<TestBackend>(&Default::default()).unwrap();
    arcane::save_model(&model, dir).unwrap();
    config
}

#[test]
fn shard_headers_and_windows() {
    let tmp = scratch();
    let valid_path = tmp.path().join("valid.bin");
    write_shard(&valid_path, &(0..300u16).collect::<Vec<_>>()).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    property(
        "shard header",
        1,
        3000,
        |r| mutate(r, &valid),
        |bytes| {
            let _ = arcane::data::read_shard_header(Path::new("s.bin"), bytes);
        },
    );
    // Whole files: a shard that opens must give every window in range.
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    property(
        "shard files",
        2,
        1000,
        |r| mutate(r, &valid),
        |bytes| {
            write(&dir, "val_000000.bin", bytes);
            if let Ok(data) = TokenData::open(&dir, "val", 16) {
                let batch = data.batch_in_order(0, data.num_windows() + 3);
                assert_eq!(batch.tokens.len(), data.num_windows() * 17);
                let _ = data.check_vocab(100);
            }
        },
    );
}

#[test]
fn safetensors_files_and_model_directories() {
    let tmp = scratch();
    let model_dir = tmp.path().join("model");
    tiny_model(&model_dir);
    let weights = std::fs::read(model_dir.join("model.safetensors")).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(model_dir.join("arcane.json")).unwrap()).unwrap();
    let case = tmp.path().join("case");
    std::fs::create_dir(&case).unwrap();
    let device = Default::default();
    property(
        "safetensors",
        3,
        3000,
        |r| mutate(r, &weights),
        |bytes| {
            let path = write(&case, "model.safetensors", bytes);
            let _ = arcane::weights::read_safetensors(std::slice::from_ref(&path));
            let _ = arcane::weights::read_safetensors_metadata(&path);
        },
    );
    std::fs::write(case.join("model.safetensors"), &weights).unwrap();
    property(
        "arcane.json",
        4,
        2000,
        |r| mutate_json(r, &manifest),
        |bytes| {
            write(&case, "arcane.json", bytes);
            let _ = arcane::load_model::<TestBackend>(&case, &device);
            let _ = arcane::load_tokenizer(&case);
        },
    );
}

#[test]
fn hugging_face_configs_and_indexes() {
    let tmp = scratch();
    let configs: Vec<Value> = ["gpt2", "llama"]
        .iter()
        .map(|m| {
            serde_json::from_slice(&std::fs::read(fixture(m).join("config.json")).unwrap()).unwrap()
        })
        .collect();
    property(
        "config.json",
        5,
        3000,
        |r| {
            let i = r.random_range(0..2);
            mutate_json(r, &configs[i])
        },
        |bytes| {
            let path = write(tmp.path(), "config.json", bytes);
            if let Ok((_, config)) = arcane::pretrained::read_hf_config(&path) {
                let _ = (
                    config.num_params(),
                    config.flops_per_token(config.max_seq_len),
                );
            }
        },
    );
    // A sharded checkpoint's index (no weights behind it: only the index is read).
    std::fs::write(tmp.path().join("config.json"), configs[1].to_string()).unwrap();
    let index = json!({"metadata": {"total_size": 10}, "weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}});
    let device = Default::default();
    property(
        "safetensors index",
        6,
        1000,
        |r| mutate_json(r, &index),
        |bytes| {
            write(tmp.path(), "model.safetensors.index.json", bytes);
            let _ = arcane::load_model::<TestBackend>(tmp.path(), &device);
        },
    );
}

#[test]
fn training_configs_and_run_files() {
    let tmp = scratch();
    let config = serde_json::to_value(TrainingConfig::tiny_cpu()).unwrap();
    property(
        "training config",
        7,
        3000,
        |r| mutate_json(r, &config),
        |bytes| {
            let path = write(tmp.path(), "train.json", bytes);
            if let Ok(c) = TrainingConfig::from_file(&path) {
                let _ = (
                    c.accumulation(1),
                    c.model.num_params(),
                    c.schedule_horizon(),
                );
            }
        },
    );
    // A checkpoint's state file, and the run's metrics log.
    let run = tmp.path().join("run");
    std::fs::create_dir_all(run.join("checkpoint")).unwrap();
    let state = json!({"format": "arcane-train-state", "version": 2, "step": 4, "tokens": 512,
        "data": {"micro_batches": 8, "windows": 16, "pass": 0, "windows_per_pass": 100},
        "seed": 1, "model_fingerprint": "{}", "elapsed_s": 1.5, "config": config,
        "data_tokens": {"train": 1000, "val": 100}});
    property(
        "state file",
        8,
        2000,
        |r| mutate_json(r, &state),
        |bytes| {
            write(&run.join("checkpoint"), "state-4.json", bytes);
            let _ = read_state(&run, 4);
        },
    );
    let metrics = b"{\"kind\":\"train\",\"step\":1,\"tokens\":128,\"loss\":10.9,\"lr\":0.001,\"grad_norm\":1.2,\"tokens_per_s\":900.0,\"mfu\":null,\"elapsed_s\":0.1}\n{\"kind\":\"val\",\"step\":1,\"tokens\":128,\"loss\":10.8}\n";
    property(
        "metrics.jsonl",
        9,
        2000,
        |r| mutate(r, metrics),
        |bytes| {
            let path = write(&run, "metrics.jsonl", bytes);
            let _ = read_metrics(&path);
        },
    );
}

#[test]
fn data_and_adapter_manifests() {
    let tmp = scratch();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_shard(&data.join("val_000000.bin"), &[1, 2, 3, 4, 5]).unwrap();
    let manifest = json!({"format": "arcane-data", "version": 1, "tokenizer": "gpt2", "documents": 1,
        "tokens": 5, "train_tokens": 0, "val_tokens": 5, "train_shards": [],
        "val_shards": ["val_000000.bin"], "sources": [{"path": "a.txt", "bytes": 9, "documents": 1, "tokens": 5}]});
    property(
        "data manifest",
        10,
        2000,
        |r| mutate_json(r, &manifest),
        |bytes| {
            write(&data, "manifest.json", bytes);
            let _ = DataManifest::read(&data);
            let _ = TokenData::open(&data, "val", 2);
        },
    );
    let adapter = tmp.path().join("adapter");
    let base = tmp.path().join("base");
    let config = tiny_model(&base);
    let model = arcane::load_model::<TestBackend>(&base, &Default::default()).unwrap();
    let tuned = arcane::lora::apply_lora(model, &arcane::lora::LoraConfig::default()).unwrap();
    arcane::lora::save_adapter(&tuned, &adapter, "base").unwrap();
    let valid: Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter.json")).unwrap()).unwrap();
    assert_eq!(valid["base_config"]["d_model"], config.d_model);
    let device = Default::default();
    property(
        "adapter.json",
        11,
        1500,
        |r| mutate_json(r, &valid),
        |bytes| {
            write(&adapter, "adapter.json", bytes);
            let base = arcane::load_model::<TestBackend>(&base, &device).unwrap();
            let _ = arcane::lora::load_adapter(base, &adapter);
        },
    );
}

#[test]
fn jsonl_inputs() {
    let good = std::fs::read(fixture("hellaswag.jsonl")).unwrap();
    property(
        "hellaswag",
        12,
        3000,
        |r| mutate(r, &good),
        |bytes| {
            for skip_bad in [false, true] {
                let _ = parse_hellaswag(bytes, Path::new("h.jsonl"), skip_bad);
            }
        },
    );
    // prepare: text and JSON lines, plain and gzip-compressed.
    let tmp = scratch();
    let docs = b"{\"text\": \"Call me Ishmael.\"}\n{\"text\": \"Some years ago.\"}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(docs).unwrap();
    let gz = gz.finish().unwrap();
    let inputs: [(&str, &[u8]); 3] = [
        ("d.jsonl", docs),
        ("d.jsonl.gz", &gz),
        ("d.txt", b"plain text"),
    ];
    // The first byte of a case picks the kind of input.
    let make = |r: &mut StdRng| {
        let kind = r.random_range(0..3);
        [vec![kind as u8], mutate(r, inputs[kind].1)].concat()
    };
    property("prepare", 13, 1000, make, |case| {
        let (name, _) = inputs[case[0] as usize];
        let input = write(tmp.path(), name, &case[1..]);
        let config = arcane::data::PrepareConfig {
            inputs: vec![input],
            out: tmp.path().join("out"),
            val_tokens: Some(2),
            shard_tokens: 64,
            tokenizer: ModelTokenizer::gpt2(),
        };
        let _ = arcane::data::prepare(&config, |_| {});
    });
}

#[test]
fn tokenizer_files() {
    let valid = std::fs::read(fixture("llama/tokenizer.json")).unwrap();
    let json: Value = serde_json::from_slice(&valid).unwrap();
    let tmp = scratch();
    property(
        "tokenizer.json",
        15,
        1000,
        |r| mutate_json(r, &json),
        |bytes| {
            let path = write(tmp.path(), "tokenizer.json", bytes);
            if let Ok(tok) = ModelTokenizer::from_file(&path) {
                if let Ok(ids) = tok.encode("Call me Ishmael. 😀") {
                    let _ = tok.decode(&ids);
                }
            }
        },
    );
}
