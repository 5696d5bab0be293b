//! Hugging Face `config.json` to and from [`ModelConfig`], for `GPT2LMHeadModel` and
//! `LlamaForCausalLM`.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{ArcaneError, Result};
use crate::model::{MlpKind, ModelConfig, NormKind, PositionEncoding};

/// The Hugging Face architectures Arcane maps onto its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfArchitecture {
    /// `GPT2LMHeadModel` (`model_type: gpt2`).
    Gpt2,
    /// `LlamaForCausalLM` (`model_type: llama`).
    Llama,
}

impl HfArchitecture {
    /// The class name transformers writes under `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Gpt2 => "GPT2LMHeadModel",
            Self::Llama => "LlamaForCausalLM",
        }
    }

    /// The Hugging Face architecture that can represent `config` exactly, if any.
    pub fn for_config(config: &ModelConfig) -> Option<Self> {
        let gelu = matches!(config.mlp, MlpKind::Gelu | MlpKind::GeluTanh);
        let gpt2 = config.positions == PositionEncoding::Learned
            && config.norm == NormKind::LayerNorm
            && config.norm_bias
            && config.bias
            && gelu
            && config.kv_heads() == config.n_heads;
        let llama = config.positions == PositionEncoding::Rope
            && config.norm == NormKind::RmsNorm
            && config.mlp == MlpKind::Swiglu;
        match (gpt2, llama) {
            (true, _) => Some(Self::Gpt2),
            (_, true) => Some(Self::Llama),
            _ => None,
        }
    }
}

/// Reads `config.json` and returns the architecture and the equivalent Arcane config.
pub fn read_hf_config(path: &Path) -> Result<(HfArchitecture, ModelConfig)> {
    let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| ArcaneError::format(path, format!("config.json is not valid JSON: {e}")))?;
    let fields = Fields {
        path,
        value: &value,
    };
    let model_type = value
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let class = value
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or("");
    let config = match (model_type, class) {
        ("gpt2", _) | (_, "GPT2LMHeadModel") => (HfArchitecture::Gpt2, gpt2(&fields)?),
        ("llama", _) | (_, "LlamaForCausalLM") => (HfArchitecture::Llama, llama(&fields)?),
        _ => {
            return Err(ArcaneError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: format!("model_type {model_type:?}, architectures [{class:?}]"),
            })
        }
    };
    config
        .1
        .validate()
        .map_err(|e| ArcaneError::format(path, e.to_string()))?;
    Ok(config)
}

/// Typed access to config.json fields with errors that name the field.
struct Fields<'a> {
    path: &'a Path,
    value: &'a Value,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| self.missing(key, "a non-negative integer"))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.usize(key),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.missing(key, "a number")),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.missing(key, "true or false")),
        }
    }

    fn str_or<'s>(&'s self, key: &str, default: &'s str) -> Result<&'s str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.missing(key, "a string")),
        }
    }

    fn missing(&self, key: &str, what: &str) -> ArcaneError {
        ArcaneError::format(self.path, format!("field `{key}` must be {what}"))
    }

    fn unsupported(&self, what: String) -> ArcaneError {
        ArcaneError::format(self.path, format!("unsupported setting: {what}"))
    }
}

fn gpt2(f: &Fields) -> Result<ModelConfig> {
    let d_model = f.usize("n_embd")?;
    let mlp = match f.str_or("activation_function", "gelu_new")? {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => MlpKind::GeluTanh,
        "gelu" => MlpKind::Gelu,
        other => {
            return Err(f.unsupported(format!(
                "activation_function {other:?} (Arcane has gelu and gelu_new)"
            )))
        }
    };
    if !f.bool_or("scale_attn_weights", true)? {
        return Err(f.unsupported("scale_attn_weights = false".into()));
    }
    if f.bool_or("scale_attn_by_inverse_layer_idx", false)? {
        return Err(f.unsupported("scale_attn_by_inverse_layer_idx = true".into()));
    }
    if f.bool_or("add_cross_attention", false)? {
        return Err(f.unsupported("add_cross_attention = true".into()));
    }
    Ok(ModelConfig {
        vocab_size: f.usize("vocab_size")?,
        max_seq_len: f.usize_or("n_positions", f.usize_or("n_ctx", 1024)?)?,
        d_model,
        n_layers: f.usize("n_layer")?,
        n_heads: f.usize("n_head")?,
        n_kv_heads: None,
        positions: PositionEncoding::Learned,
        rope_theta: 10_000.0,
        norm: NormKind::LayerNorm,
        norm_eps: f.f64_or("layer_norm_epsilon", 1e-5)?,
        norm_bias: true,
        mlp,
        mlp_hidden: f.get("n_inner").map(|_| f.usize("n_inner")).transpose()?,
        bias: true,
        tie_embeddings: f.bool_or("tie_word_embeddings", true)?,
        dropout: 0.0,
        init_std: f.f64_or("initializer_range", 0.02)?,
    })
}

fn llama(f: &Fields) -> Result<ModelConfig> {
    let d_model = f.usize("hidden_size")?;
    let n_heads = f.usize("num_attention_heads")?;
    let n_kv_heads = f.usize_or("num_key_value_heads", n_heads)?;
    if let Some(head_dim) = f.get("head_dim") {
        if head_dim.as_u64() != Some((d_model / n_heads.max(1)) as u64) {
            return Err(f.unsupported(format!(
                "head_dim {head_dim} differs from hidden_size / num_attention_heads"
            )));
        }
    }
    let act = f.str_or("hidden_act", "silu")?;
    if act != "silu" {
        return Err(f.unsupported(format!("hidden_act {act:?} (Arcane's SwiGLU uses silu)")));
    }
    let (attention_bias, mlp_bias) = (
        f.bool_or("attention_bias", false)?,
        f.bool_or("mlp_bias", false)?,
    );
    if attention_bias != mlp_bias {
        return Err(f.unsupported("attention_bias differs from mlp_bias".into()));
    }
    // transformers 4.x: top-level `rope_theta` and `rope_scaling`; 5.x: `rope_parameters`.
    let mut rope_theta = f.f64_or("rope_theta", 10_000.0)?;
    for key in ["rope_parameters", "rope_scaling"] {
        let Some(params) = f.get(key) else { continue };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if kind != "default" {
            return Err(f.unsupported(format!("{key}.rope_type {kind:?} (only default RoPE)")));
        }
        if let Some(theta) = params.get("rope_theta").and_then(Value::as_f64) {
            rope_theta = theta;
        }
    }
    Ok(ModelConfig {
        vocab_size: f.usize("vocab_size")?,
        max_seq_len: f.usize_or("max_position_embeddings", 2048)?,
        d_model,
        n_layers: f.usize("num_hidden_layers")?,
        n_heads,
        n_kv_heads: (n_kv_heads != n_heads).then_some(n_kv_heads),
        positions: PositionEncoding::Rope,
        rope_theta,
        norm: NormKind::RmsNorm,
        norm_eps: f.f64_or("rms_norm_eps", 1e-6)?,
        norm_bias: false,
        mlp: MlpKind::Swiglu,
        mlp_hidden: Some(f.usize("intermediate_size")?),
        bias: attention_bias,
        tie_embeddings: f.bool_or("tie_word_embeddings", false)?,
        dropout: 0.0,
        init_std: f.f64_or("initializer_range", 0.02)?,
    })
}

/// The `config.json` transformers needs to load `config` as `arch`.
pub fn hf_config_json(arch: HfArchitecture, config: &ModelConfig) -> Value {
    let c = config;
    // GPT-2's end-of-text doubles as BOS/EOS, when the vocabulary has it.
    let eot = (c.vocab_size > 50256).then_some(50256);
    let common = json!({
        "architectures": [arch.class_name()],
        "vocab_size": c.vocab_size,
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": c.init_std,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "torch_dtype": "float32",
        "dtype": "float32",
    });
    let specific = match arch {
        HfArchitecture::Gpt2 => json!({
            "model_type": "gpt2",
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
        HfArchitecture::Llama => json!({
            "model_type": "llama",
            "hidden_size": c.d_model,
            "intermediate_size": c.hidden_size(),
            "num_hidden_layers": c.n_layers,
            "num_attention_heads": c.n_heads,
            "num_key_value_heads": c.kv_heads(),
            "head_dim": c.head_dim(),
            "max_position_embeddings": c.max_seq_len,
            "rms_norm_eps": c.norm_eps,
            "hidden_act": "silu",
            "attention_bias": c.bias,
            "mlp_bias": c.bias,
            // Both spellings, so that transformers 4.x and 5.x read the same theta.
            "rope_theta": c.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        }),
    };
    let mut map: Map<String, Value> = common.as_object().cloned().unwrap_or_default();
    map.extend(specific.as_object().cloned().unwrap_or_default());
    Value::Object(map)
}

/// The `bos_token_id` and `eos_token_id` of a Hugging Face `config.json` (the first of a list),
/// where it names them; `(None, None)` when the file cannot be read.
pub fn hf_special_ids(path: &Path) -> (Option<u32>, Option<u32>) {
    let value: Value = match std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(v) => v,
        None => return (None, None),
    };
    let id = |key: &str| {
        let v = value.get(key)?;
        let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
        v.as_u64().and_then(|n| u32::try_from(n).ok())
    };
    (id("bos_token_id"), id("eos_token_id"))
}
