//! The further Hugging Face architectures (Qwen2, Qwen3, Mistral, Gemma, Phi-3, Llama 3.x RoPE
//! scaling) against transformers: logits on the fused and the generic path, cached decoding,
//! greedy continuations, lossless export, and the settings Arcane refuses by name. Fixtures
//! from `scripts/make_reference.py --archs`.

mod common;

use std::path::Path;

use arcane::kernels::generic_only;
use arcane::model::{MlpKind, NormKind, RopeScaling};
use arcane::pretrained::{hf_eos_ids, load_hf, read_hf_config, save_hf, HfArchitecture};
use arcane::shapes::FixedShapes;
use arcane::weights::{collect, read_safetensors};
use arcane::{load_model, save_model, Gpt};
use common::parity::{check_cached_decoding, check_greedy, check_logits};
use common::*;
use serde_json::Value;

/// Every further architecture's fixture and its class.
const ARCHS: [(&str, HfArchitecture); 6] = [
    ("qwen2", HfArchitecture::Qwen2),
    ("qwen3", HfArchitecture::Qwen3),
    ("mistral", HfArchitecture::Mistral),
    ("gemma", HfArchitecture::Gemma),
    ("phi3", HfArchitecture::Phi3),
    ("llama3", HfArchitecture::Llama),
];

fn load(name: &str) -> Gpt<TestBackend> {
    load_model::<TestBackend>(&fixture(name), &Default::default()).expect("fixture loads")
}

/// `tests/fixtures/reference_archs.json`.
fn reference_archs() -> Value {
    let text = std::fs::read_to_string(fixture("reference_archs.json")).expect("reference file");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn each_fixture_reads_as_its_architecture_with_its_switches() {
    for (name, arch) in ARCHS {
        let (read, config) = read_hf_config(&fixture(name).join("config.json")).unwrap();
        assert_eq!(read, arch, "{name}");
        assert_eq!(config.hf_architecture.as_deref(), Some(arch.class_name()));
        assert_eq!(reference_archs()[name]["class"], arch.class_name());
        // Each fixture switches on what its family differs in.
        let expected = match name {
            "qwen2" => config.qkv_bias && !config.bias && config.tie_embeddings,
            "qwen3" => config.qk_norm && config.head_dim == Some(16) && config.d_model == 32,
            "gemma" => {
                config.norm == NormKind::RmsNormPlusOne
                    && config.mlp == MlpKind::Geglu
                    && config.embedding_scale
                    && config.head_dim == Some(16)
                    && config.kv_heads() == 1
            }
            "llama3" => matches!(
                config.rope_scaling,
                Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0
            ),
            // Windows shorter than the test sequences (12 tokens, 19 with the greedy ones).
            "mistral" => config.sliding_window == Some(5),
            "phi3" => config.sliding_window == Some(8),
            _ => unreachable!(),
        };
        assert!(expected, "{name}: {config:?}");
    }
}

#[test]
fn logits_match_transformers_on_the_fused_and_the_generic_path() {
    let r = reference_archs();
    for (name, _) in ARCHS {
        let model = load(name);
        for record in r[name]["logits"].as_array().unwrap() {
            check_logits(&model, record);
            generic_only(|| check_logits(&model, record));
        }
    }
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    let r = reference_archs();
    for (name, _) in ARCHS {
        let model = load(name);
        let seq = ids(&r[name]["logits"][0]["tokens"]);
        check_cached_decoding(&model, &seq);
        generic_only(|| check_cached_decoding(&model, &seq));
    }
}

#[test]
fn greedy_continuations_match_transformers() {
    let r = reference_archs();
    for (name, _) in ARCHS {
        let model = load(name);
        for shapes in [FixedShapes::EXACT, FixedShapes::BUCKETED] {
            check_greedy(&model, &r[name]["greedy"], 2, shapes);
        }
    }
}

#[test]
fn hugging_face_export_is_lossless() {
    for (name, arch) in ARCHS {
        let original = read_safetensors(&[fixture(name).join("model.safetensors")]).unwrap();
        let model = load(name);
        let out = tempfile::tempdir().unwrap();
        assert_eq!(save_hf(&model, out.path()).unwrap(), arch, "{name}");
        // The same names, shapes and values (Phi-3's fused tensors fused again, Gemma's
        // offsets not shifted by one).
        let exported = read_safetensors(&[out.path().join("model.safetensors")]).unwrap();
        assert_eq!(exported, original, "{name}: exported tensors differ");
        let (read, config) = read_hf_config(&out.path().join("config.json")).unwrap();
        assert_eq!((read, &config), (arch, model.config()), "{name}");
        let reloaded = load_hf::<TestBackend>(out.path(), &Default::default()).unwrap();
        assert_eq!(collect(&reloaded), collect(&model), "{name}");
        let seq: Vec<u32> = (0..9).map(|t| (t * 41 + 7) % 512).collect();
        let device = model.device();
        assert_eq!(
            values(reloaded.forward(tokens(&seq, &device))),
            values(model.forward(tokens(&seq, &device))),
            "{name}"
        );
    }
}

#[test]
fn arcane_checkpoints_keep_the_new_switches() {
    for (name, _) in ARCHS {
        let model = load(name);
        let out = tempfile::tempdir().unwrap();
        save_model(&model, out.path()).unwrap();
        let reloaded = load_model::<TestBackend>(out.path(), &Default::default()).unwrap();
        assert_eq!(reloaded.config(), model.config(), "{name}");
        assert_eq!(collect(&reloaded), collect(&model), "{name}");
    }
}

#[test]
fn eos_lists_are_read_whole_and_written_back() {
    assert_eq!(hf_eos_ids(&fixture("llama3").join("config.json")), [2, 3]);
    assert_eq!(hf_eos_ids(&fixture("qwen2").join("config.json")), [2]);
    let ids = load("llama3").config().hf_token_ids.clone().unwrap();
    assert_eq!((ids.bos, ids.eos, ids.pad), (Some(1), vec![2, 3], None));
    let out = tempfile::tempdir().unwrap();
    save_hf(&load("llama3"), out.path()).unwrap();
    let text = std::fs::read_to_string(out.path().join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["eos_token_id"], serde_json::json!([2, 3]));
    assert_eq!(config["bos_token_id"], 1);
}

/// A copy of fixture `name` whose config.json is edited by `edit`.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(name).join(file), dir.path().join(file)).unwrap();
    }
    dir
}

fn read_error(dir: &Path) -> String {
    read_hf_config(&dir.join("config.json"))
        .err()
        .expect("this config must be refused")
        .to_string()
}

#[test]
fn settings_arcane_does_not_implement_are_refused_by_name() {
    use serde_json::json;
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "llama3",
            "rope_scaling",
            json!({"rope_type": "yarn", "factor": 4.0}),
            "\"yarn\"",
        ),
        (
            "llama3",
            "rope_scaling",
            json!({"type": "linear", "factor": 2.0}),
            "\"linear\"",
        ),
        (
            "phi3",
            "rope_parameters",
            json!({"rope_type": "longrope", "rope_theta": 1e4}),
            "\"longrope\"",
        ),
        ("phi3", "rope_scaling", json!({"type": "su"}), "\"su\""),
        ("phi3", "partial_rotary_factor", json!(0.5), "0.5"),
        (
            "qwen3",
            "rope_parameters",
            json!({"rope_type": "default", "rope_theta": 1e3, "partial_rotary_factor": 0.25}),
            "0.25",
        ),
        ("gemma", "attn_logit_softcapping", json!(50.0), "50"),
        ("gemma", "final_logit_softcapping", json!(30.0), "30"),
        ("gemma", "query_pre_attn_scalar", json!(256), "256"),
        ("gemma", "use_bidirectional_attention", json!(true), "true"),
        ("gemma", "attention_bias", json!(true), "true"),
        ("gemma", "hidden_act", json!("relu"), "\"relu\""),
        ("phi3", "qk_layernorm", json!(true), "true"),
        ("qwen3", "attention_bias", json!(true), "true"),
        ("qwen2", "mlp_bias", json!(true), "true"),
        ("mistral", "hidden_act", json!("gelu"), "\"gelu\""),
        ("llama3", "mlp_bias", json!(true), "false"),
    ];
    for (name, key, value, shown) in cases {
        let dir = edited(name, |c| {
            c.insert(key.into(), value.clone());
        });
        let err = read_error(dir.path());
        // The refused key's name (`rope_scaling.rope_type`, `attention_bias = ...`) and value.
        assert!(
            err.contains(key) && err.contains(shown),
            "{name} {key} = {value}: {err}"
        );
        assert!(load_hf::<TestBackend>(dir.path(), &Default::default()).is_err());
    }
    // Qwen2 with its window switched on for sliding layers, below the context: named in
    // `layer_types` (transformers 5), or from `max_window_layers` on (older files).
    let dir = edited("qwen2", |c| {
        c.insert("use_sliding_window".into(), json!(true));
        c.insert(
            "layer_types".into(),
            json!(["full_attention", "sliding_attention"]),
        );
    });
    assert!(read_error(dir.path()).contains("sliding_window = 16"));
    let dir = edited("qwen2", |c| {
        c.insert("use_sliding_window".into(), json!(true));
        c.insert("max_window_layers".into(), json!(1));
        c.remove("layer_types");
    });
    assert!(read_error(dir.path()).contains("sliding_window = 16"));
}

#[test]
fn neutral_spellings_of_those_settings_are_accepted() {
    use serde_json::json;
    let accepted: Vec<(&str, &str, Value)> = vec![
        ("mistral", "partial_rotary_factor", json!(1.0)),
        ("gemma", "hidden_activation", json!("gelu_pytorch_tanh")),
        ("gemma", "final_logit_softcapping", Value::Null),
        ("qwen3", "use_sliding_window", json!(false)),
        // Switched on, but every layer is a full-attention one (as transformers reads it).
        ("qwen2", "use_sliding_window", json!(true)),
        ("llama3", "dtype", json!("bfloat16")),
    ];
    for (name, key, value) in accepted {
        let dir = edited(name, |c| {
            c.insert(key.into(), value.clone());
        });
        let (_, config) = read_hf_config(&dir.path().join("config.json")).unwrap();
        assert_eq!(&config, load(name).config(), "{name} {key}");
    }
}

/// A window is kept when it is shorter than the context, and is full causal attention (none)
/// otherwise: absent from a Mistral config it is transformers' default, 4096.
#[test]
fn sliding_windows_are_read_as_transformers_reads_them() {
    use serde_json::json;
    for (name, value, expected) in [
        ("mistral", json!(16), Some(16)),
        ("mistral", json!(64), None),
        ("mistral", Value::Null, None),
        ("phi3", json!(63), Some(63)),
        ("phi3", Value::Null, None),
    ] {
        let dir = edited(name, |c| {
            c.insert("sliding_window".into(), value.clone());
        });
        let (_, config) = read_hf_config(&dir.path().join("config.json")).unwrap();
        assert_eq!(config.sliding_window, expected, "{name} {value}");
    }
    let dir = edited("mistral", |c| {
        c.remove("sliding_window");
    });
    let (_, config) = read_hf_config(&dir.path().join("config.json")).unwrap();
    assert_eq!(config.sliding_window, None, "4096 >= 64 positions");
}

/// The window matters on these fixtures: without it the logits are not transformers'.
#[test]
fn the_sliding_window_changes_the_logits() {
    let r = reference_archs();
    for name in ["mistral", "phi3"] {
        let windowed = load(name);
        let mut full = windowed.clone();
        full.config.sliding_window = None;
        for block in &mut full.blocks {
            block.attn.window = None;
        }
        let seq = ids(&r[name]["logits"][0]["tokens"]);
        let device = full.device();
        let (a, b) = (
            values(full.forward(tokens(&seq, &device))),
            values(windowed.forward(tokens(&seq, &device))),
        );
        assert!(max_abs_diff(&a, &b) > 1e-2, "{name}");
    }
}

/// A LoRA adapter on Qwen3 (q/k norms, explicit head width, wider q than the model): a fresh
/// one changes nothing, and training it lowers the loss while the base stays frozen.
#[test]
fn lora_fine_tunes_a_qwen3() {
    use arcane::lora::{apply_lora, LoraConfig, LoraTarget};
    use arcane::training::{lm_loss, GroupedAdamW, OptimizerConfig};
    use burn::optim::{GradientsParams, Optimizer};
    type AD = TestAutodiff;
    let base = load_model::<AD>(&fixture("qwen3"), &Default::default()).unwrap();
    let device = base.device();
    let seq: Vec<u32> = (0..17).map(|t| (t * 29 + 3) % 512).collect();
    let (inputs, targets) = (
        tokens::<AD>(&seq[..16], &device),
        tokens::<AD>(&seq[1..], &device),
    );
    let before = values(base.forward(inputs.clone()));
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: LoraTarget::ALL.to_vec(),
    };
    let adapted = apply_lora(base.clone(), &config).unwrap();
    assert_eq!(values(adapted.forward(inputs.clone())), before);
    // q is 32 -> 64 and o 64 -> 32 here (4 heads of 16 on a width of 32).
    let (trainable, _) = arcane::lora::parameter_counts(&adapted);
    let per_layer = 4 * ((32 + 64) * 2 + (32 + 32) * 2 + 3 * (32 + 48));
    assert_eq!(trainable, 2 * per_layer + 4 * (32 + 512));
    let mut optim = GroupedAdamW::new(&OptimizerConfig::default(), &adapted);
    let mut model = adapted;
    let loss0 = values(lm_loss(&model, inputs.clone(), targets.clone()))[0];
    for _ in 0..3 {
        let grads = lm_loss(&model, inputs.clone(), targets.clone()).backward();
        model = optim.step(
            1e-2,
            model.clone(),
            GradientsParams::from_grads(grads, &model),
        );
    }
    let loss1 = values(lm_loss(&model, inputs, targets))[0];
    assert!(loss1 < loss0 - 1e-3, "loss {loss0} -> {loss1}");
    let frozen = collect(&base);
    let after = collect(&model);
    for (name, t) in &frozen {
        assert_eq!(&after[name], t, "{name} changed although it is frozen");
    }
}

/// An adapter belongs to a model, not to the files it came in: one saved on the Hugging Face
/// folder loads onto a copy that records no class (an Arcane file written before the field).
#[test]
fn adapters_fit_the_same_model_whatever_its_recorded_class() {
    use arcane::lora::{apply_lora, load_adapter, save_adapter, LoraConfig};
    let adapted = apply_lora(load("phi3"), &LoraConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&adapted, dir.path(), "phi3").unwrap();
    let mut unrecorded = load("phi3");
    unrecorded.config.hf_architecture = None;
    let restored = load_adapter(unrecorded, dir.path()).unwrap();
    assert_eq!(collect(&restored), collect(&adapted));
    let mut other = load("phi3");
    other.config.sliding_window = Some(4);
    let err = load_adapter(other, dir.path()).unwrap_err().to_string();
    assert!(err.contains("sliding_window 8 vs 4"), "{err}");
}

/// DPO with a LoRA adapter on each architecture: the policy starts equal to the reference, so
/// the first loss is exactly `ln 2` with zero margins, and a few steps on the same pairs lower it.
#[test]
fn dpo_aligns_each_architecture() {
    use arcane::align::{train_dpo, AlignLog, DpoConfig, OptimSettings, TokenPair};
    use arcane::lora::LoraConfig;
    use arcane::training::MetricRecord;
    let pairs: Vec<TokenPair> = (0..6u32)
        .map(|i| TokenPair {
            prompt: vec![100 + i % 5, 101],
            chosen: (0..4 + i % 3).map(|j| 10 + (i * 7 + j) % 30).collect(),
            rejected: (0..3 + i % 4).map(|j| 40 + (i * 5 + j) % 30).collect(),
            margin: 0.0,
        })
        .collect();
    for (name, _) in ARCHS {
        let policy = load_model::<TestAutodiff>(&fixture(name), &Default::default()).unwrap();
        let mut steps = Vec::new();
        let mut log = AlignLog::new(None, |r: &MetricRecord| {
            if let MetricRecord::Align { values, .. } = r {
                steps.push((values["loss"], values["rewards/margins"]));
            }
        });
        let config = DpoConfig {
            epochs: 100,
            max_steps: Some(6),
            batch_pairs: 6,
            lora: Some(LoraConfig {
                rank: 4,
                ..LoraConfig::default()
            }),
            optim: OptimSettings {
                lr: 1e-2,
                ..OptimSettings::default()
            },
            ..DpoConfig::default()
        };
        train_dpo(policy, &pairs, &[], &config, &mut log).unwrap();
        drop(log);
        let ln2 = std::f64::consts::LN_2;
        assert!((steps[0].0 - ln2).abs() < 1e-6, "{name}: {steps:?}");
        assert!(steps[0].1.abs() < 1e-6, "{name}: {steps:?}");
        let last = steps.last().unwrap();
        assert!(last.0 < ln2 - 1e-2 && last.1 > 0.0, "{name}: {steps:?}");
    }
}

/// config.json files as the Hub serves them (written by transformers 4.34 to 4.51, abridged to
/// the keys that matter): each reads, with the switches its family needs, or is refused by name.
#[test]
fn hub_config_files_read_as_their_models() {
    let read = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), text).unwrap();
        read_hf_config(&dir.path().join("config.json")).map(|(_, c)| c)
    };
    let llama32 = read(
        r#"{"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,
        "eos_token_id":[128001,128008,128009],"head_dim":64,"hidden_act":"silu","hidden_size":2048,
        "intermediate_size":8192,"max_position_embeddings":131072,"mlp_bias":false,
        "model_type":"llama","num_attention_heads":32,"num_hidden_layers":16,
        "num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":{
        "factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
        "original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,
        "tie_word_embeddings":true,"torch_dtype":"bfloat16","vocab_size":128256}"#,
    )
    .unwrap();
    assert_eq!(llama32.rope_theta, 500000.0);
    assert!(
        matches!(llama32.rope_scaling, Some(RopeScaling::Llama3 { factor, original_max_position_embeddings: 8192, .. }) if factor == 32.0)
    );
    let qwen25 = read(
        r#"{"architectures":["Qwen2ForCausalLM"],"bos_token_id":151643,"eos_token_id":151643,
        "hidden_act":"silu","hidden_size":896,"intermediate_size":4864,
        "max_position_embeddings":32768,"max_window_layers":24,"model_type":"qwen2",
        "num_attention_heads":14,"num_hidden_layers":24,"num_key_value_heads":2,
        "rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":32768,
        "tie_word_embeddings":true,"torch_dtype":"bfloat16","use_mrope":false,
        "use_sliding_window":false,"vocab_size":151936}"#,
    )
    .unwrap();
    assert!(qwen25.qkv_bias && qwen25.tie_embeddings && qwen25.sliding_window.is_none());
    assert_eq!((qwen25.head_dim(), qwen25.kv_heads()), (64, 2));
    let qwen3 = read(
        r#"{"architectures":["Qwen3ForCausalLM"],"attention_bias":false,"eos_token_id":151645,
        "head_dim":128,"hidden_act":"silu","hidden_size":1024,"intermediate_size":3072,
        "max_position_embeddings":40960,"max_window_layers":28,"model_type":"qwen3",
        "num_attention_heads":16,"num_hidden_layers":28,"num_key_value_heads":8,
        "rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":1000000,"sliding_window":null,
        "tie_word_embeddings":true,"torch_dtype":"bfloat16","use_sliding_window":false,
        "vocab_size":151936}"#,
    )
    .unwrap();
    assert!(qwen3.qk_norm && qwen3.head_dim == Some(128) && qwen3.rope_theta == 1e6);
    let gemma7b = read(
        r#"{"architectures":["GemmaForCausalLM"],"attention_bias":false,"bos_token_id":2,
        "eos_token_id":1,"head_dim":256,"hidden_act":"gelu","hidden_size":3072,
        "intermediate_size":24576,"max_position_embeddings":8192,"model_type":"gemma",
        "num_attention_heads":16,"num_hidden_layers":28,"num_key_value_heads":16,
        "pad_token_id":0,"rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":10000.0,
        "torch_dtype":"bfloat16","vocab_size":256000}"#,
    )
    .unwrap();
    assert_eq!(
        gemma7b.head_dim,
        Some(256),
        "16 heads of 256 on a width of 3072"
    );
    assert!(gemma7b.mlp == MlpKind::Geglu && gemma7b.tie_embeddings && gemma7b.embedding_scale);
    let phi3 = read(
        r#"{"architectures":["Phi3ForCausalLM"],"attention_bias":false,"bos_token_id":1,
        "embd_pdrop":0.0,"eos_token_id":32000,"hidden_act":"silu","hidden_size":3072,
        "intermediate_size":8192,"max_position_embeddings":4096,"model_type":"phi3",
        "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,
        "original_max_position_embeddings":4096,"pad_token_id":32000,"resid_pdrop":0.0,
        "rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":10000.0,"sliding_window":2047,
        "tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":32064}"#,
    )
    .unwrap();
    assert_eq!(phi3.sliding_window, Some(2047));
    let mistral01 = read(
        r#"{"architectures":["MistralForCausalLM"],"bos_token_id":1,"eos_token_id":2,
        "hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,
        "max_position_embeddings":32768,"model_type":"mistral","num_attention_heads":32,
        "num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,
        "rope_theta":10000.0,"sliding_window":4096,"tie_word_embeddings":false,
        "torch_dtype":"bfloat16","vocab_size":32000}"#,
    )
    .unwrap();
    assert_eq!(mistral01.sliding_window, Some(4096));
    // Phi-3 128k's LongRoPE is refused by name.
    let err = read(
        r#"{"architectures":["Phi3ForCausalLM"],"hidden_size":3072,"intermediate_size":8192,
        "max_position_embeddings":131072,"model_type":"phi3","num_attention_heads":32,
        "num_hidden_layers":32,"rope_scaling":{"long_factor":[1.0],"short_factor":[1.0],
        "type":"longrope"},"vocab_size":32064}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rope_scaling") && err.contains("longrope"),
        "{err}"
    );
}
