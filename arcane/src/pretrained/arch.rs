//! The Hugging Face classes Arcane reads and writes, and which of them can hold a given
//! [`ModelConfig`]. Every class maps onto the one Arcane model; they differ in its switches
//! (see `config.rs`) and in how their files name and lay out the tensors (see `keys.rs`).

use crate::model::{MlpKind, ModelConfig, NormKind, PositionEncoding};

/// The Hugging Face architectures Arcane maps onto its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfArchitecture {
    /// `GPT2LMHeadModel` (`model_type: gpt2`).
    Gpt2,
    /// `LlamaForCausalLM` (`model_type: llama`), Llama 1 to 3.x (with `llama3` RoPE scaling).
    Llama,
    /// `MistralForCausalLM` (`model_type: mistral`): Llama's function with sliding-window
    /// attention, no biases.
    Mistral,
    /// `Qwen2ForCausalLM` (`model_type: qwen2`, also Qwen2.5): biases on q, k and v.
    Qwen2,
    /// `Qwen3ForCausalLM` (`model_type: qwen3`): per-head RMSNorm on queries and keys.
    Qwen3,
    /// `GemmaForCausalLM` (`model_type: gemma`, Gemma 1): GeGLU, `(1 + w)` RMSNorm, embeddings
    /// scaled by `sqrt(hidden_size)`.
    Gemma,
    /// `Phi3ForCausalLM` (`model_type: phi3`): Llama's function with sliding-window attention
    /// and fused `qkv_proj` and `gate_up_proj` tensors in its files.
    Phi3,
}

/// Every architecture, in the order an export without a recorded class tries them.
pub const ARCHITECTURES: [HfArchitecture; 7] = [
    HfArchitecture::Gpt2,
    HfArchitecture::Llama,
    HfArchitecture::Qwen2,
    HfArchitecture::Qwen3,
    HfArchitecture::Gemma,
    HfArchitecture::Mistral,
    HfArchitecture::Phi3,
];

impl HfArchitecture {
    /// The class name transformers writes under `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Gpt2 => "GPT2LMHeadModel",
            Self::Llama => "LlamaForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Gemma => "GemmaForCausalLM",
            Self::Phi3 => "Phi3ForCausalLM",
        }
    }

    /// The `model_type` of its `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma => "gemma",
            Self::Phi3 => "phi3",
        }
    }

    /// The architecture a `config.json` names: its `model_type`, else its first class.
    pub fn from_names(model_type: &str, class: &str) -> Option<Self> {
        ARCHITECTURES
            .into_iter()
            .find(|a| a.model_type() == model_type)
            .or_else(|| ARCHITECTURES.into_iter().find(|a| a.class_name() == class))
    }

    /// True when this class computes exactly the function `config` describes.
    pub fn represents(self, config: &ModelConfig) -> bool {
        let c = config;
        if self == Self::Gpt2 {
            return c.positions == PositionEncoding::Learned
                && c.norm == NormKind::LayerNorm
                && c.norm_bias
                && c.bias
                && matches!(c.mlp, MlpKind::Gelu | MlpKind::GeluTanh)
                && c.kv_heads() == c.n_heads
                && c.head_dim.is_none_or(|d| d * c.n_heads == c.d_model)
                && !(c.qkv_bias || c.qk_norm || c.embedding_scale)
                && c.sliding_window.is_none();
        }
        // The Llama-like families: RoPE, and exactly their own switches.
        let (norm, mlp, scaled) = match self {
            Self::Gemma => (NormKind::RmsNormPlusOne, MlpKind::Geglu, true),
            _ => (NormKind::RmsNorm, MlpKind::Swiglu, false),
        };
        let biases = match self {
            // `attention_bias` and `mlp_bias` together.
            Self::Llama => !c.qkv_bias,
            Self::Qwen2 => c.qkv_bias && !c.bias,
            _ => !c.qkv_bias && !c.bias,
        };
        // Only Mistral and Phi-3 slide every layer.
        let window = c.sliding_window.is_none() || matches!(self, Self::Mistral | Self::Phi3);
        c.positions == PositionEncoding::Rope
            && window
            && c.norm == norm
            && c.mlp == mlp
            && c.embedding_scale == scaled
            && c.qk_norm == (self == Self::Qwen3)
            && biases
    }

    /// The architecture an export writes `config` as: the class it was imported from when that
    /// class can hold it (so a Mistral stays a Mistral), else the first that can.
    pub fn for_config(config: &ModelConfig) -> Option<Self> {
        let recorded = config
            .hf_architecture
            .as_deref()
            .and_then(|class| Self::from_names("", class));
        recorded
            .into_iter()
            .chain(ARCHITECTURES)
            .find(|a| a.represents(config))
    }
}
