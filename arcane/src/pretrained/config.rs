//! Hugging Face `config.json` to [`ModelConfig`], for every [`HfArchitecture`], in the old
//! (transformers 4.x: top-level `rope_theta`, `rope_scaling`, `torch_dtype`) and new (5.x:
//! `rope_parameters`, `dtype`) spellings. A setting that changes the function and that Arcane
//! does not implement is refused with an error naming the key and its value, never ignored.

use std::path::Path;

use serde_json::Value;

use super::arch::HfArchitecture;
use crate::error::{ArcaneError, Result};
use crate::model::{HfTokenIds, MlpKind, ModelConfig, NormKind, PositionEncoding, RopeScaling};

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
    let arch = HfArchitecture::from_names(model_type, class).ok_or_else(|| {
        ArcaneError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            found: format!("model_type {model_type:?}, architectures [{class:?}]"),
        }
    })?;
    let mut config = match arch {
        HfArchitecture::Gpt2 => gpt2(&fields)?,
        _ => decoder(&fields, arch)?,
    };
    config.hf_architecture = Some(arch.class_name().to_string());
    config.hf_token_ids = Some(HfTokenIds {
        bos: token_id(&value, "bos_token_id"),
        eos: token_ids(&value, "eos_token_id"),
        pad: token_id(&value, "pad_token_id"),
    });
    config
        .validate()
        .map_err(|e| ArcaneError::format(path, e.to_string()))?;
    Ok((arch, config))
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
        head_dim: None,
        positions: PositionEncoding::Learned,
        rope_theta: 10_000.0,
        rope_scaling: None,
        sliding_window: None,
        norm: NormKind::LayerNorm,
        norm_eps: f.f64_or("layer_norm_epsilon", 1e-5)?,
        norm_bias: true,
        mlp,
        mlp_hidden: f.get("n_inner").map(|_| f.usize("n_inner")).transpose()?,
        bias: true,
        qkv_bias: false,
        qk_norm: false,
        embedding_scale: false,
        tie_embeddings: f.bool_or("tie_word_embeddings", true)?,
        dropout: 0.0,
        init_std: f.f64_or("initializer_range", 0.02)?,
        hf_architecture: None,
        hf_token_ids: None,
    })
}

/// Llama and the families built on it (Mistral, Qwen2, Qwen3, Gemma, Phi-3): RoPE, RMSNorm and a
/// gated MLP, with each family's switches (see `modeling_<family>.py` in transformers).
fn decoder(f: &Fields, arch: HfArchitecture) -> Result<ModelConfig> {
    use HfArchitecture as A;
    let d_model = f.usize("hidden_size")?;
    let n_heads = f.usize("num_attention_heads")?;
    let n_kv_heads = f.usize_or("num_key_value_heads", n_heads)?;
    let max_seq_len = f.usize_or("max_position_embeddings", default_context(arch))?;
    // An explicit `head_dim` equal to the quotient is the same model: keep the config minimal.
    let head_dim = match f.get("head_dim") {
        None => None,
        Some(_) => Some(f.usize("head_dim")?).filter(|&d| d * n_heads != d_model),
    };
    refuse_unsupported(f)?;
    let (rope_theta, rope_scaling) = rope(f)?;
    let sliding_window = sliding_window(f, arch, max_seq_len)?;
    let gemma = arch == A::Gemma;
    let (bias, qkv_bias) = biases(f, arch)?;
    Ok(ModelConfig {
        vocab_size: f.usize("vocab_size")?,
        max_seq_len,
        d_model,
        n_layers: f.usize("num_hidden_layers")?,
        n_heads,
        n_kv_heads: (n_kv_heads != n_heads).then_some(n_kv_heads),
        head_dim,
        positions: PositionEncoding::Rope,
        rope_theta,
        rope_scaling,
        sliding_window,
        norm: if gemma {
            NormKind::RmsNormPlusOne
        } else {
            NormKind::RmsNorm
        },
        norm_eps: f.f64_or("rms_norm_eps", if arch == A::Phi3 { 1e-5 } else { 1e-6 })?,
        norm_bias: false,
        mlp: activation(f, arch)?,
        mlp_hidden: Some(f.usize("intermediate_size")?),
        bias,
        qkv_bias,
        qk_norm: arch == A::Qwen3,
        embedding_scale: gemma,
        tie_embeddings: f.bool_or("tie_word_embeddings", gemma)?,
        dropout: 0.0,
        init_std: f.f64_or("initializer_range", 0.02)?,
        hf_architecture: None,
        hf_token_ids: None,
    })
}

/// transformers' default `max_position_embeddings` of each family.
fn default_context(arch: HfArchitecture) -> usize {
    match arch {
        HfArchitecture::Mistral => 4096 * 32,
        HfArchitecture::Qwen2 | HfArchitecture::Qwen3 => 32768,
        HfArchitecture::Gemma => 8192,
        HfArchitecture::Phi3 => 4096,
        _ => 2048,
    }
}

/// The MLP: silu (SwiGLU) everywhere but Gemma, whose tanh GELU (GeGLU) is spelled
/// `hidden_activation` or, in the first releases, `hidden_act: "gelu"`, which transformers reads
/// as the tanh approximation (`GemmaConfig.__post_init__`).
fn activation(f: &Fields, arch: HfArchitecture) -> Result<MlpKind> {
    if arch == HfArchitecture::Gemma {
        let key = match f.get("hidden_activation") {
            Some(_) => "hidden_activation",
            None => "hidden_act",
        };
        return match f.str_or(key, "gelu_pytorch_tanh")? {
            "gelu" | "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(MlpKind::Geglu),
            other => Err(f.unsupported(format!(
                "{key} {other:?} (Arcane's Gemma MLP is GeGLU with the tanh GELU)"
            ))),
        };
    }
    match f.str_or("hidden_act", "silu")? {
        "silu" | "swish" => Ok(MlpKind::Swiglu),
        other => Err(f.unsupported(format!("hidden_act {other:?} (Arcane's SwiGLU uses silu)"))),
    }
}

/// `(bias, qkv_bias)`: Llama's `attention_bias` and `mlp_bias` (together only); Qwen2's q, k and
/// v biases (always there); none elsewhere.
fn biases(f: &Fields, arch: HfArchitecture) -> Result<(bool, bool)> {
    let attention = f.bool_or("attention_bias", false)?;
    let mlp = f.bool_or("mlp_bias", false)?;
    match arch {
        HfArchitecture::Llama if attention != mlp => Err(f.unsupported(format!(
            "attention_bias = {attention} with mlp_bias = {mlp} (Arcane has biases on every \
             projection or none)"
        ))),
        HfArchitecture::Llama => Ok((attention, false)),
        // Qwen2Attention has q/k/v biases whatever the config says, and never others.
        HfArchitecture::Qwen2 if mlp => Err(f.unsupported("mlp_bias = true".into())),
        HfArchitecture::Qwen2 => Ok((false, true)),
        _ if attention => Err(f.unsupported("attention_bias = true".into())),
        _ if mlp => Err(f.unsupported("mlp_bias = true".into())),
        _ => Ok((false, false)),
    }
}

/// Settings of neighbouring families that would change the function if read past: refused by
/// name when they are set to anything but their neutral value.
fn refuse_unsupported(f: &Fields) -> Result<()> {
    for key in [
        "attn_logit_softcapping",
        "final_logit_softcapping",
        "query_pre_attn_scalar",
        "logit_scale",
    ] {
        if let Some(v) = f.get(key) {
            return Err(f.unsupported(format!("{key} = {v} (Gemma 1 and Llama have none)")));
        }
    }
    for key in ["use_bidirectional_attention", "qk_layernorm", "use_qk_norm"] {
        if f.bool_or(key, false)? {
            return Err(f.unsupported(format!("{key} = true")));
        }
    }
    Ok(())
}

/// `(rope_theta, rope_scaling)` from the top-level `rope_theta` / `rope_scaling` (transformers
/// 4.x) or `rope_parameters` (5.x). Only the default and `llama3` RoPE types are implemented;
/// any other (`linear`, `dynamic`, `yarn`, `longrope`, `su`, ...) and a
/// `partial_rotary_factor` other than 1 are refused by name.
fn rope(f: &Fields) -> Result<(f64, Option<RopeScaling>)> {
    let mut theta = f.f64_or("rope_theta", 10_000.0)?;
    let mut scaling = None;
    check_partial_rotary(f, "partial_rotary_factor", f.get("partial_rotary_factor"))?;
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(params) = f.get(key) else { continue };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = format!("{key}.partial_rotary_factor");
        check_partial_rotary(f, &name, params.get("partial_rotary_factor"))?;
        if let Some(t) = params.get("rope_theta").and_then(Value::as_f64) {
            theta = t;
        }
        match kind {
            "default" => {}
            "llama3" => scaling = Some(llama3_scaling(f, key, params)?),
            other => {
                return Err(f.unsupported(format!(
                    "{key}.rope_type {other:?} (Arcane implements the default and llama3 RoPE)"
                )))
            }
        }
    }
    Ok((theta, scaling))
}

fn check_partial_rotary(f: &Fields, key: &str, value: Option<&Value>) -> Result<()> {
    match value.filter(|v| !v.is_null()) {
        Some(v) if v.as_f64() != Some(1.0) => {
            Err(f.unsupported(format!("{key} = {v} (Arcane rotates the whole head)")))
        }
        _ => Ok(()),
    }
}

/// The four numbers of a `llama3` scaling, each one required.
fn llama3_scaling(f: &Fields, key: &str, params: &Value) -> Result<RopeScaling> {
    let number = |name: &str| {
        params
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| f.missing(&format!("{key}.{name}"), "a number (llama3 RoPE)"))
    };
    let context = number("original_max_position_embeddings")?;
    let scaling = RopeScaling::Llama3 {
        factor: number("factor")?,
        low_freq_factor: number("low_freq_factor")?,
        high_freq_factor: number("high_freq_factor")?,
        original_max_position_embeddings: context as usize,
    };
    scaling
        .validate()
        .map_err(|e| ArcaneError::format(f.path, e.to_string()))?;
    Ok(scaling)
}

/// Sliding-window attention (Mistral, Phi-3; Qwen2/Qwen3 with `use_sliding_window: true`) lets
/// a token see only the last `sliding_window` positions. Arcane implements it in every layer
/// (Mistral, Phi-3); a window at least as long as the context is full causal attention (`None`).
/// Qwen's windows, which slide only some layers, are refused below the context.
fn sliding_window(f: &Fields, arch: HfArchitecture, context: usize) -> Result<Option<usize>> {
    let used = match arch {
        // MistralConfig's default window is 4096 when the key is absent; null is no window.
        HfArchitecture::Mistral => match f.value.get("sliding_window") {
            None => Some(Ok(4096)),
            Some(Value::Null) => None,
            Some(_) => Some(f.usize("sliding_window")),
        },
        HfArchitecture::Phi3 => f.get("sliding_window").map(|_| f.usize("sliding_window")),
        HfArchitecture::Qwen2 | HfArchitecture::Qwen3 => {
            // transformers drops the window unless `use_sliding_window`, and then slides the
            // layers that `layer_types` names, or (older files) those from `max_window_layers`.
            let on = f.bool_or("use_sliding_window", false)?;
            let sliding_layers = match f.get("layer_types").and_then(Value::as_array) {
                Some(l) => l.iter().any(|t| t.as_str() == Some("sliding_attention")),
                None => f.usize_or("max_window_layers", 28)? < f.usize("num_hidden_layers")?,
            };
            (on && sliding_layers)
                .then(|| f.get("sliding_window").map(|_| f.usize("sliding_window")))
                .flatten()
        }
        _ => None,
    };
    match used.transpose()? {
        Some(window)
            if window < context
                && matches!(arch, HfArchitecture::Qwen2 | HfArchitecture::Qwen3) =>
        {
            Err(f.unsupported(format!(
                "sliding_window = {window} below max_position_embeddings = {context} on Qwen's \
             sliding layers (Arcane slides every layer or none; set max_position_embeddings to \
             at most {window} in config.json to use the model within one window, where both \
             are the same)"
            )))
        }
        Some(window) if window < context => Ok(Some(window)),
        _ => Ok(None),
    }
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

/// Every id of `eos_token_id` (a number or, as Llama 3 and Gemma instruct models write it, a
/// list): generation should stop at any of them. Empty when the file names none.
pub fn hf_eos_ids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| token_ids(&v, "eos_token_id"))
        .unwrap_or_default()
}

/// The ids under `key`: a number, or a list of numbers (anything else: none).
fn token_ids(config: &Value, key: &str) -> Vec<u32> {
    let Some(v) = config.get(key) else {
        return Vec::new();
    };
    let list = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    list.iter()
        .filter_map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

/// The first id under `key`.
fn token_id(config: &Value, key: &str) -> Option<u32> {
    token_ids(config, key).first().copied()
}
