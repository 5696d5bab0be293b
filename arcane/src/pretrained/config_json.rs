//! [`ModelConfig`] to the `config.json` that transformers loads as a given [`HfArchitecture`],
//! readable by transformers 4.x and 5.x alike (both spellings of the RoPE settings).

use serde_json::{json, Map, Value};

use super::arch::HfArchitecture;
use crate::model::{MlpKind, ModelConfig, RopeScaling};

/// The `config.json` transformers needs to load `config` as `arch`.
pub fn hf_config_json(arch: HfArchitecture, config: &ModelConfig) -> Value {
    let c = config;
    let (bos, eos, pad) = match &c.hf_token_ids {
        // An imported model's own ids, one EOS as a number and several as a list.
        Some(ids) => (
            json!(ids.bos),
            match ids.eos.as_slice() {
                [] => Value::Null,
                [one] => json!(one),
                many => json!(many),
            },
            json!(ids.pad),
        ),
        None => {
            // A model Arcane built: GPT-2's end-of-text doubles as BOS/EOS for a vocabulary of
            // GPT-2's size (50257, padded up to 51200 as Arcane's 50304); a larger one is
            // another tokenizer's, whose ids are not known: none rather than a wrong one.
            let eot = (50257..=51200).contains(&c.vocab_size).then_some(50256);
            (json!(eot), json!(eot), Value::Null)
        }
    };
    let common = json!({
        "architectures": [arch.class_name()],
        "model_type": arch.model_type(),
        "vocab_size": c.vocab_size,
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": c.init_std,
        "bos_token_id": bos,
        "eos_token_id": eos,
        // Null unless the source names one: Phi-3's default (32000) would be outside a small
        // vocabulary.
        "pad_token_id": pad,
        "torch_dtype": "float32",
        "dtype": "float32",
    });
    let specific = match arch {
        HfArchitecture::Gpt2 => json!({
            "n_positions": c.max_seq_len,
            "n_ctx": c.max_seq_len,
            "n_embd": c.d_model,
            "n_layer": c.n_layers,
            "n_head": c.n_heads,
            "n_inner": c.mlp_hidden,
            "activation_function": if c.mlp == MlpKind::Gelu { "gelu" } else { "gelu_new" },
            "layer_norm_epsilon": c.norm_eps,
            "resid_pdrop": c.dropout,
            "embd_pdrop": c.dropout,
            "attn_pdrop": 0.0,
            "scale_attn_weights": true,
        }),
        _ => decoder_json(arch, c),
    };
    let mut map: Map<String, Value> = common.as_object().cloned().unwrap_or_default();
    map.extend(specific.as_object().cloned().unwrap_or_default());
    Value::Object(map)
}

/// The fields of the Llama-like families: the shared ones, then each family's own.
fn decoder_json(arch: HfArchitecture, c: &ModelConfig) -> Value {
    let mut rope = json!({"rope_type": "default", "rope_theta": c.rope_theta});
    if let Some(RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    }) = &c.rope_scaling
    {
        rope = json!({
            "rope_type": "llama3",
            "rope_theta": c.rope_theta,
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        });
    }
    let shared = json!({
        "hidden_size": c.d_model,
        "intermediate_size": c.hidden_size(),
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.kv_heads(),
        "head_dim": c.head_dim(),
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "hidden_act": "silu",
        // transformers 4.x reads the top-level keys, 5.x `rope_parameters`.
        "rope_theta": c.rope_theta,
        "rope_scaling": if c.rope_scaling.is_some() { rope.clone() } else { Value::Null },
        "rope_parameters": rope,
        "attention_dropout": 0.0,
    });
    let specific = match arch {
        HfArchitecture::Llama => json!({"attention_bias": c.bias, "mlp_bias": c.bias}),
        HfArchitecture::Mistral | HfArchitecture::Phi3 => {
            json!({"sliding_window": c.sliding_window})
        }
        HfArchitecture::Qwen2 | HfArchitecture::Qwen3 => json!({
            "attention_bias": false,
            "use_sliding_window": false,
            "sliding_window": null,
            "max_window_layers": c.n_layers,
        }),
        HfArchitecture::Gemma => json!({
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh",
            "attention_bias": false,
        }),
        HfArchitecture::Gpt2 => json!({}),
    };
    let mut map: Map<String, Value> = shared.as_object().cloned().unwrap_or_default();
    map.extend(specific.as_object().cloned().unwrap_or_default());
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HfTokenIds;

    #[test]
    fn an_imported_models_token_ids_are_written_back() {
        let config = ModelConfig {
            vocab_size: 128_256,
            hf_token_ids: Some(HfTokenIds {
                bos: Some(128_000),
                eos: vec![128_001, 128_008, 128_009],
                pad: None,
            }),
            ..ModelConfig::arcane_124m()
        };
        let json = hf_config_json(HfArchitecture::Llama, &config);
        assert_eq!(json["bos_token_id"], 128_000);
        assert_eq!(json["eos_token_id"], json!([128_001, 128_008, 128_009]));
        assert!(json["pad_token_id"].is_null());
    }

    #[test]
    fn gpt2s_end_of_text_only_for_a_gpt2_sized_vocabulary() {
        let arcane = ModelConfig::arcane_124m();
        let json = hf_config_json(HfArchitecture::Llama, &arcane);
        assert_eq!(json["eos_token_id"], 50256);
        let qwen = ModelConfig {
            vocab_size: 151_936,
            qkv_bias: true,
            hf_architecture: Some("Qwen2ForCausalLM".into()),
            ..arcane
        };
        let json = hf_config_json(HfArchitecture::Qwen2, &qwen);
        assert!(json["eos_token_id"].is_null(), "{json}");
        assert_eq!(json["model_type"], "qwen2");
    }
}
