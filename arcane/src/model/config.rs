//! The one model configuration type, covering exact GPT-2, the Arcane (Llama-style) family and
//! the Hugging Face families Arcane imports (Llama 3.x RoPE scaling, Mistral and Phi-3 sliding
//! windows, Qwen2 q/k/v biases, Qwen3 q/k norms, Gemma's GeGLU, `(1 + w)` norms and scaled
//! embeddings) as switches of one block, plus the named presets and the arithmetic every tool
//! needs (parameters, FLOPs, memory).

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{ArcaneError, Result};

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEncoding {
    /// A learned table of `max_seq_len` position vectors added to the token embeddings (GPT-2 `wpe`).
    Learned,
    /// Rotary embeddings applied to queries and keys (Su et al. 2021, arXiv:2104.09864), in the
    /// rotate-half convention of Hugging Face Llama.
    Rope,
}

/// The normalisation layer used before attention, before the MLP and before the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// LayerNorm (Ba et al. 2016): `(x - mean) / sqrt(var + eps) * weight + bias`.
    LayerNorm,
    /// RMSNorm (Zhang & Sennrich 2019): `x / sqrt(mean(x^2) + eps) * weight`.
    RmsNorm,
    /// Gemma's RMSNorm, `x / sqrt(mean(x^2) + eps) * (1 + weight)` (`GemmaRMSNorm`): the stored
    /// gain is an offset from one, initialised to zero. The checkpoint's values are kept as they
    /// are and `1 + weight` is formed in f32 on every forward, as transformers does, so import
    /// and export are exact.
    RmsNormPlusOne,
}

/// The position-wise feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpKind {
    /// `proj(gelu_tanh(fc(x)))`: GPT-2's `gelu_new`, the tanh approximation of GELU.
    GeluTanh,
    /// `proj(gelu(fc(x)))` with the exact (erf) GELU.
    Gelu,
    /// SwiGLU (Shazeer 2020, arXiv:2002.05202): `proj(silu(gate(x)) * fc(x))`, three projections.
    Swiglu,
    /// GeGLU (same paper) with the tanh GELU, as Gemma: `proj(gelu_tanh(gate(x)) * fc(x))`.
    Geglu,
}

impl MlpKind {
    /// True for the gated kinds (a third projection, `gate`).
    pub fn gated(self) -> bool {
        matches!(self, Self::Swiglu | Self::Geglu)
    }
}

/// A rescaling of RoPE's frequencies for contexts longer than the pre-training one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    /// Llama 3.1's (`"rope_type": "llama3"`, `_compute_llama3_parameters` in transformers):
    /// with `λ_i = 2π / θ_i`, frequencies whose wavelength is below
    /// `original_max_position_embeddings / high_freq_factor` are kept, those above
    /// `original_max_position_embeddings / low_freq_factor` are divided by `factor`, and those
    /// between interpolate with `s = (L / λ_i - low) / (high - low)`:
    /// `θ'_i = (1 - s) · θ_i / factor + s · θ_i`.
    Llama3 {
        /// Divisor of the low frequencies (8 in Llama 3.1).
        factor: f64,
        /// Wavelength bound, as a fraction of the original context (1 in Llama 3.1).
        low_freq_factor: f64,
        /// Wavelength bound, as a fraction of the original context (4 in Llama 3.1).
        high_freq_factor: f64,
        /// The pre-training context `L` (8192 in Llama 3.1).
        original_max_position_embeddings: usize,
    },
}

/// Architecture of a GPT-2-class decoder-only transformer.
///
/// Field names follow Burn; each doc gives the GPT-2 / Hugging Face name. Every field has a
/// default (the GPT-2 124M value where one exists), so a config file may list only what differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size (`vocab_size`). 50257 for the GPT-2 BPE; pad to 50304 (a multiple of 64)
    /// when training from scratch, because matmuls are faster on round sizes.
    pub vocab_size: usize,
    /// Context length in tokens (`n_positions`, `block_size`, `max_position_embeddings`).
    pub max_seq_len: usize,
    /// Residual stream width (`n_embd`, `hidden_size`).
    pub d_model: usize,
    /// Number of transformer blocks (`n_layer`, `num_hidden_layers`).
    pub n_layers: usize,
    /// Number of query heads (`n_head`, `num_attention_heads`).
    pub n_heads: usize,
    /// Number of key/value heads (`num_key_value_heads`); `None` means `n_heads` (plain multi-head
    /// attention). Fewer gives grouped-query attention (Ainslie et al. 2023).
    pub n_kv_heads: Option<usize>,
    /// Width of one attention head (`head_dim`); `None` means `d_model / n_heads`. Gemma and
    /// Qwen3 set it explicitly, and `n_heads · head_dim` may differ from `d_model`.
    pub head_dim: Option<usize>,
    /// Learned position table or RoPE.
    pub positions: PositionEncoding,
    /// RoPE base frequency θ (`rope_theta`); unused with learned positions.
    pub rope_theta: f64,
    /// Rescaled RoPE frequencies (`rope_scaling` / `rope_parameters`); `None` is plain RoPE.
    pub rope_scaling: Option<RopeScaling>,
    /// Sliding-window attention in every layer (`sliding_window`, Mistral and Phi-3): position
    /// `i` sees keys `i - W < j <= i`. `None` is full causal attention.
    pub sliding_window: Option<usize>,
    /// LayerNorm or RMSNorm.
    pub norm: NormKind,
    /// Epsilon of every norm (`layer_norm_epsilon`, `rms_norm_eps`).
    pub norm_eps: f64,
    /// Whether LayerNorm has a bias (ignored by RMSNorm, which never has one).
    pub norm_bias: bool,
    /// The feed-forward block.
    pub mlp: MlpKind,
    /// Hidden width of the MLP (`n_inner`, `intermediate_size`); `None` means `4 * d_model`.
    pub mlp_hidden: Option<usize>,
    /// Whether the attention and MLP projections have biases (GPT-2: yes; Llama: no).
    pub bias: bool,
    /// Biases on the query, key and value projections even when `bias` is false (Qwen2).
    pub qkv_bias: bool,
    /// RMSNorm over each head's queries and keys before RoPE, with its own `[D]` gains
    /// (Qwen3's `q_norm` / `k_norm`); always the plain RMSNorm with `norm_eps`.
    pub qk_norm: bool,
    /// Multiply the token embeddings by `sqrt(d_model)` before the first block (Gemma; the
    /// tied head uses the unscaled table).
    pub embedding_scale: bool,
    /// Whether the output head shares the token embedding matrix (`tie_word_embeddings`).
    pub tie_embeddings: bool,
    /// Dropout probability on embeddings and on each residual branch (`resid_pdrop`,
    /// `embd_pdrop`). Attention probabilities are not dropped: the fused attention kernel has no
    /// dropout. 0 for pre-training at this scale, as in build-nanogpt.
    pub dropout: f64,
    /// Standard deviation of the normal initialisation of weight matrices (GPT-2: 0.02).
    pub init_std: f64,
    /// The Hugging Face class this model was imported from (`architectures[0]`, e.g.
    /// `MistralForCausalLM`), which an export writes back when it can hold the model: some
    /// classes compute the same function (Llama, Mistral, Phi-3) and differ only in their
    /// files. `None` lets the export choose from the switches above.
    pub hf_architecture: Option<String>,
    /// The special token ids of the Hugging Face `config.json` this model was imported from,
    /// which an export writes back; `None` for a model Arcane built.
    pub hf_token_ids: Option<HfTokenIds>,
}

/// `bos_token_id`, `eos_token_id` (one or several: generation stops at any) and `pad_token_id`
/// of a Hugging Face config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HfTokenIds {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence: every id that ends a generation (Llama 3 instruct lists three).
    pub eos: Vec<u32>,
    /// Padding.
    pub pad: Option<u32>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::gpt2_124m()
    }
}

impl burn::config::Config for ModelConfig {}

/// The names accepted by [`ModelConfig::preset`].
pub const PRESETS: [&str; 5] = [
    "tiny",
    "gpt2-124m",
    "arcane-124m",
    "arcane-355m",
    "arcane-1.3b",
];

impl ModelConfig {
    /// A tiny GPT-2-style model for tests: 2 layers, width 64, byte-sized vocabulary.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 256,
            max_seq_len: 64,
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            ..Self::gpt2_124m()
        }
    }

    /// Exact GPT-2 small (124M): learned positions, LayerNorm, GELU (tanh), biases, tied head.
    pub fn gpt2_124m() -> Self {
        Self {
            vocab_size: 50257,
            max_seq_len: 1024,
            d_model: 768,
            n_layers: 12,
            n_heads: 12,
            n_kv_heads: None,
            head_dim: None,
            positions: PositionEncoding::Learned,
            rope_theta: 10_000.0,
            rope_scaling: None,
            sliding_window: None,
            norm: NormKind::LayerNorm,
            norm_eps: 1e-5,
            norm_bias: true,
            mlp: MlpKind::GeluTanh,
            mlp_hidden: None,
            bias: true,
            qkv_bias: false,
            qk_norm: false,
            embedding_scale: false,
            tie_embeddings: true,
            dropout: 0.0,
            init_std: 0.02,
            hf_architecture: None,
            hf_token_ids: None,
        }
    }

    /// The Arcane family shape: RoPE, RMSNorm, SwiGLU, no biases, tied head, padded vocabulary.
    /// The SwiGLU width is about `8/3 * d_model` (rounded to a multiple of 64), which keeps the
    /// MLP's parameter count equal to GPT-2's `4 * d_model` GELU MLP.
    fn arcane(d_model: usize, n_layers: usize, n_heads: usize, mlp_hidden: usize) -> Self {
        Self {
            vocab_size: 50304,
            max_seq_len: 1024,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: None,
            head_dim: None,
            positions: PositionEncoding::Rope,
            rope_theta: 10_000.0,
            rope_scaling: None,
            sliding_window: None,
            norm: NormKind::RmsNorm,
            norm_eps: 1e-5,
            norm_bias: false,
            mlp: MlpKind::Swiglu,
            mlp_hidden: Some(mlp_hidden),
            bias: false,
            qkv_bias: false,
            qk_norm: false,
            embedding_scale: false,
            tie_embeddings: true,
            dropout: 0.0,
            init_std: 0.02,
            hf_architecture: None,
            hf_token_ids: None,
        }
    }

    /// Arcane 124M: GPT-2 small's shape with the modern components.
    pub fn arcane_124m() -> Self {
        Self::arcane(768, 12, 12, 2048)
    }

    /// Arcane 355M: GPT-2 medium's shape (24 layers, width 1024, 16 heads).
    pub fn arcane_355m() -> Self {
        Self::arcane(1024, 24, 16, 2752)
    }

    /// Arcane 1.3B: GPT-3 XL's shape (24 layers, width 2048, 16 heads of 128).
    pub fn arcane_1_3b() -> Self {
        Self::arcane(2048, 24, 16, 5504)
    }

    /// Looks up a preset by name (see [`PRESETS`]).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "gpt2-124m" => Some(Self::gpt2_124m()),
            "arcane-124m" => Some(Self::arcane_124m()),
            "arcane-355m" => Some(Self::arcane_355m()),
            "arcane-1.3b" => Some(Self::arcane_1_3b()),
            _ => None,
        }
    }

    /// Reads a model config from a JSON file and validates it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| {
            ArcaneError::format(
                path,
                format!("not a valid Arcane model config: {e} (see configs/ for examples)"),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that the dimensions fit together; every constructor of a model calls this.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(ArcaneError::InvalidConfig(msg));
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("max_seq_len", self.max_seq_len),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.kv_heads()),
            ("mlp_hidden", self.hidden_size()),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        // Far beyond any model Arcane can train, and small enough that sizes computed from
        // them cannot overflow: a corrupt config is an error, not an allocation failure.
        for (name, value, limit) in [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("max_seq_len", self.max_seq_len, 1 << 20),
            ("d_model", self.d_model, 1 << 16),
            ("n_layers", self.n_layers, 1 << 10),
            ("mlp_hidden", self.hidden_size(), 1 << 18),
        ] {
            if value > limit {
                return fail(format!(
                    "{name} ({value}) is larger than Arcane supports ({limit})"
                ));
            }
        }
        if let Some(d) = self.head_dim {
            if d == 0 || d > 1 << 12 {
                return fail(format!("head_dim must be in 1..=4096, got {d}"));
            }
        } else if self.d_model % self.n_heads != 0 {
            return fail(format!(
                "d_model ({}) must be divisible by n_heads ({})",
                self.d_model, self.n_heads
            ));
        }
        if self.n_heads % self.kv_heads() != 0 {
            return fail(format!(
                "n_heads ({}) must be a multiple of n_kv_heads ({})",
                self.n_heads,
                self.kv_heads()
            ));
        }
        if self.positions == PositionEncoding::Rope && self.head_dim() % 2 != 0 {
            return fail(format!(
                "RoPE needs an even head dimension, got {}",
                self.head_dim()
            ));
        }
        if let Some(scaling) = &self.rope_scaling {
            scaling.validate()?;
        }
        if self.sliding_window == Some(0) {
            return fail("sliding_window must be at least 1 (or absent)".into());
        }
        if !(self.rope_theta > 0.0) {
            return fail(format!(
                "rope_theta must be positive, got {}",
                self.rope_theta
            ));
        }
        if !(self.norm_eps > 0.0) {
            return fail(format!("norm_eps must be positive, got {}", self.norm_eps));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.init_std > 0.0) {
            return fail(format!("init_std must be positive, got {}", self.init_std));
        }
        Ok(())
    }

    /// True when `other` describes the same model: equal in every field but
    /// [`Self::hf_architecture`] and [`Self::hf_token_ids`], which describe the files a model
    /// came in, not what it computes (an adapter trained on a Hugging Face folder fits the
    /// Arcane copy of it, and files written before these fields existed hold none).
    pub fn same_model(&self, other: &Self) -> bool {
        let strip = |c: &Self| Self {
            hf_architecture: None,
            hf_token_ids: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }

    /// Number of key/value heads (`n_kv_heads`, or `n_heads` when unset).
    pub fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// Width of one attention head: `head_dim`, or `D = d_model / n_heads` when unset.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// Hidden width of the MLP.
    pub fn hidden_size(&self) -> usize {
        self.mlp_hidden.unwrap_or(self.d_model.saturating_mul(4))
    }

    /// Exact number of parameters of the model this config builds.
    pub fn num_params(&self) -> usize {
        let (d, h, v) = (self.d_model, self.hidden_size(), self.vocab_size);
        let (q, kv) = (
            self.n_heads * self.head_dim(),
            self.kv_heads() * self.head_dim(),
        );
        let bias = usize::from(self.bias);
        let qkv_bias = usize::from(self.bias || self.qkv_bias);
        let norm = match self.norm {
            NormKind::LayerNorm if self.norm_bias => 2 * d,
            _ => d,
        };
        let qk_norm = usize::from(self.qk_norm) * 2 * self.head_dim();
        let attn = 2 * d * q + 2 * d * kv + qkv_bias * (q + 2 * kv) + bias * d + qk_norm;
        let mlp = if self.mlp.gated() {
            3 * d * h + bias * (2 * h + d)
        } else {
            2 * d * h + bias * (h + d)
        };
        let block = 2 * norm + attn + mlp;
        let wpe = self.position_params();
        let head = if self.tie_embeddings { 0 } else { v * d };
        v * d + wpe + self.n_layers * block + norm + head
    }

    /// Parameters of the learned position table (0 with RoPE).
    pub fn position_params(&self) -> usize {
        match self.positions {
            PositionEncoding::Learned => self.max_seq_len * self.d_model,
            PositionEncoding::Rope => 0,
        }
    }

    /// Training FLOPs per token at context `seq_len`: `6N + 12·L·(H·D)·T` (Kaplan et al.
    /// 2020, PaLM appendix B, with the attention width `H·D`, which is `d` unless `head_dim` is
    /// set), where N counts the parameters that take part in matmuls: all of them except the
    /// learned position table (a lookup, like the token embedding, which is counted once
    /// because it is also the output head when tied).
    pub fn flops_per_token(&self, seq_len: usize) -> f64 {
        let n = (self.num_params() - self.position_params()) as f64;
        let width = self.n_heads * self.head_dim();
        6.0 * n + 12.0 * (self.n_layers * width * seq_len) as f64
    }

    /// Forward-only FLOPs per token at context `seq_len`: a third of [`Self::flops_per_token`].
    pub fn forward_flops_per_token(&self, seq_len: usize) -> f64 {
        self.flops_per_token(seq_len) / 3.0
    }

    /// Bytes of one token's keys and values across all layers (f32), the KV cache's growth rate.
    pub fn kv_cache_bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_heads() * self.head_dim() * 4
    }
}

impl RopeScaling {
    /// Checks the factors: positive, and `high_freq_factor > low_freq_factor`.
    pub fn validate(&self) -> Result<()> {
        let Self::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = *self;
        if !(factor > 0.0 && low_freq_factor > 0.0 && high_freq_factor > low_freq_factor)
            || original_max_position_embeddings == 0
        {
            return Err(ArcaneError::InvalidConfig(format!(
                "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor \
                 and original_max_position_embeddings > 0, got {self:?}"
            )));
        }
        Ok(())
    }

    /// The rescaled inverse frequency of one RoPE pair, given the unscaled `inv_freq = θ_i`.
    pub fn scale(&self, inv_freq: f64) -> f64 {
        let Self::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: context,
        } = *self;
        let context = context as f64;
        let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
        if wavelen < context / high {
            inv_freq
        } else if wavelen > context / low {
            inv_freq / factor
        } else {
            let smooth = (context / wavelen - low) / (high - low);
            (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_parameter_counts_match_their_names() {
        // GPT-2 small has 124,439,808 parameters with its tied head (the HF model card's 124M).
        assert_eq!(ModelConfig::gpt2_124m().num_params(), 124_439_808);
        for (name, target) in [
            ("arcane-124m", 124e6),
            ("arcane-355m", 355e6),
            ("arcane-1.3b", 1.3e9),
        ] {
            let n = ModelConfig::preset(name).unwrap().num_params() as f64;
            assert!(
                (n / target - 1.0).abs() < 0.05,
                "{name} has {n} parameters, more than 5% from {target}"
            );
        }
    }

    #[test]
    fn every_preset_validates_and_round_trips_through_json() {
        for name in PRESETS {
            let config = ModelConfig::preset(name).unwrap();
            config.validate().unwrap();
            let json = serde_json::to_string(&config).unwrap();
            assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), config);
        }
    }

    #[test]
    fn config_files_may_omit_defaults_but_not_misspell_fields() {
        let c: ModelConfig = serde_json::from_str(r#"{"n_layers": 2}"#).unwrap();
        assert_eq!(c.n_layers, 2);
        assert_eq!(c.d_model, 768);
        // Files written before the architecture switches existed load as before.
        assert_eq!((c.head_dim, c.rope_scaling.clone()), (None, None));
        assert!(!(c.qkv_bias || c.qk_norm || c.embedding_scale));
        assert_eq!(c.hf_architecture, None);
        assert!(serde_json::from_str::<ModelConfig>(r#"{"n_layer": 2}"#).is_err());
    }

    #[test]
    fn the_new_switches_round_trip_through_json() {
        let config = ModelConfig {
            head_dim: Some(16),
            n_heads: 4,
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            norm: NormKind::RmsNormPlusOne,
            mlp: MlpKind::Geglu,
            qkv_bias: true,
            qk_norm: true,
            embedding_scale: true,
            hf_architecture: Some("GemmaForCausalLM".into()),
            ..ModelConfig::arcane_124m()
        };
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""rope_type":"llama3""#), "{json}");
        assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), config);
    }

    #[test]
    fn llama3_scaling_keeps_high_divides_low_and_blends_between() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let tau = 2.0 * std::f64::consts::PI;
        // Wavelength 8 < 64 / 4: kept; wavelength 128 > 64 / 1: divided by 8.
        assert_eq!(s.scale(tau / 8.0), tau / 8.0);
        assert_eq!(s.scale(tau / 128.0), tau / 128.0 / 8.0);
        // Wavelength 32: s = (64 / 32 - 1) / (4 - 1) = 1/3 of the way from θ/8 to θ.
        let f = tau / 32.0;
        let expected = (2.0 / 3.0) * f / 8.0 + (1.0 / 3.0) * f;
        assert!((s.scale(f) - expected).abs() < 1e-15);
    }

    #[test]
    fn inconsistent_dimensions_are_rejected_with_a_reason() {
        let mut c = ModelConfig::tiny();
        c.n_heads = 5;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("divisible by n_heads"), "{err}");
        let mut c = ModelConfig::tiny();
        c.n_kv_heads = Some(3);
        assert!(c.validate().is_err());
    }
}
