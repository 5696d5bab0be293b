//! The one table between Hugging Face tensor names and Arcane parameter paths.
//!
//! Every translation of checkpoint keys happens here (as llama-burn's `KeyRemapper` and
//! candle's `into_config` do it), in both directions, with the layout change each key needs.

use super::config::HfArchitecture;
use crate::model::{MlpKind, ModelConfig};

/// How a Hugging Face tensor's layout relates to the Arcane parameter(s) it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Same values, same shape (embeddings, norms, biases, GPT-2's `Conv1D` weights, which are
    /// stored `[in, out]` like Burn's `Linear`).
    Same,
    /// `nn.Linear` stores `[out, in]`; Burn's `Linear` stores `[in, out]`.
    Transpose,
    /// One fused tensor whose last dimension concatenates several Arcane parameters
    /// (GPT-2's `c_attn` = q | k | v).
    SplitLast,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMap {
    /// The tensor's name in the Hugging Face file (GPT-2 body keys without `transformer.`).
    pub hf: String,
    /// Its shape in the Hugging Face file.
    pub hf_shape: Vec<usize>,
    /// The Arcane parameter path(s) it holds, in order.
    pub arcane: Vec<String>,
    /// How to convert between the two.
    pub layout: Layout,
}

fn row(hf: String, hf_shape: Vec<usize>, arcane: &[String], layout: Layout) -> KeyMap {
    KeyMap {
        hf,
        hf_shape,
        arcane: arcane.to_vec(),
        layout,
    }
}

/// All tensors of `arch` for a model of `config`, in file order.
pub fn key_table(arch: HfArchitecture, config: &ModelConfig) -> Vec<KeyMap> {
    let mut rows = match arch {
        HfArchitecture::Gpt2 => gpt2_rows(config),
        HfArchitecture::Llama => llama_rows(config),
    };
    if !config.tie_embeddings {
        let (c, v) = (config.d_model, config.vocab_size);
        rows.push(row(
            "lm_head.weight".into(),
            vec![v, c],
            &one("lm_head.weight"),
            Layout::Transpose,
        ));
    }
    rows
}

fn one(s: &str) -> Vec<String> {
    vec![s.to_string()]
}

/// `GPT2LMHeadModel`'s body: `Conv1D` weights `[in, out]`, fused `c_attn`.
fn gpt2_rows(config: &ModelConfig) -> Vec<KeyMap> {
    let (c, v, f) = (config.d_model, config.vocab_size, config.hidden_size());
    let mut rows = Vec::new();
    rows.push(row(
        "wte.weight".into(),
        vec![v, c],
        &one("wte.weight"),
        Layout::Same,
    ));
    rows.push(row(
        "wpe.weight".into(),
        vec![config.max_seq_len, c],
        &one("wpe.weight"),
        Layout::Same,
    ));
    for i in 0..config.n_layers {
        let (h, a) = (format!("h.{i}"), format!("blocks.{i}"));
        for (hf_norm, norm) in [("ln_1", "ln1"), ("ln_2", "ln2")] {
            for p in ["weight", "bias"] {
                rows.push(row(
                    format!("{h}.{hf_norm}.{p}"),
                    vec![c],
                    &one(&format!("{a}.{norm}.{p}")),
                    Layout::Same,
                ));
            }
        }
        let qkv = |p: &str| ["q", "k", "v"].map(|n| format!("{a}.attn.{n}.{p}"));
        rows.push(row(
            format!("{h}.attn.c_attn.weight"),
            vec![c, 3 * c],
            &qkv("weight"),
            Layout::SplitLast,
        ));
        rows.push(row(
            format!("{h}.attn.c_attn.bias"),
            vec![3 * c],
            &qkv("bias"),
            Layout::SplitLast,
        ));
        for (hf_lin, lin, shape) in [
            ("attn.c_proj", "attn.o", [c, c]),
            ("mlp.c_fc", "mlp.fc", [c, f]),
            ("mlp.c_proj", "mlp.proj", [f, c]),
        ] {
            rows.push(row(
                format!("{h}.{hf_lin}.weight"),
                shape.to_vec(),
                &one(&format!("{a}.{lin}.weight")),
                Layout::Same,
            ));
            rows.push(row(
                format!("{h}.{hf_lin}.bias"),
                vec![shape[1]],
                &one(&format!("{a}.{lin}.bias")),
                Layout::Same,
            ));
        }
    }
    for p in ["weight", "bias"] {
        rows.push(row(
            format!("ln_f.{p}"),
            vec![c],
            &one(&format!("ln_f.{p}")),
            Layout::Same,
        ));
    }
    rows
}

/// `LlamaForCausalLM`'s body: `nn.Linear` weights `[out, in]`, separate projections.
fn llama_rows(config: &ModelConfig) -> Vec<KeyMap> {
    let (c, v, f) = (config.d_model, config.vocab_size, config.hidden_size());
    let kv = config.kv_heads() * config.head_dim();
    let mut rows = Vec::new();
    rows.push(row(
        "model.embed_tokens.weight".into(),
        vec![v, c],
        &one("wte.weight"),
        Layout::Same,
    ));
    for i in 0..config.n_layers {
        let (h, a) = (format!("model.layers.{i}"), format!("blocks.{i}"));
        rows.push(row(
            format!("{h}.input_layernorm.weight"),
            vec![c],
            &one(&format!("{a}.ln1.weight")),
            Layout::Same,
        ));
        rows.push(row(
            format!("{h}.post_attention_layernorm.weight"),
            vec![c],
            &one(&format!("{a}.ln2.weight")),
            Layout::Same,
        ));
        let mut linears = vec![
            ("self_attn.q_proj", "attn.q", [c, c]),
            ("self_attn.k_proj", "attn.k", [c, kv]),
            ("self_attn.v_proj", "attn.v", [c, kv]),
            ("self_attn.o_proj", "attn.o", [c, c]),
            ("mlp.up_proj", "mlp.fc", [c, f]),
            ("mlp.down_proj", "mlp.proj", [f, c]),
        ];
        if config.mlp == MlpKind::Swiglu {
            linears.push(("mlp.gate_proj", "mlp.gate", [c, f]));
        }
        for (hf_lin, lin, [d_in, d_out]) in linears {
            rows.push(row(
                format!("{h}.{hf_lin}.weight"),
                vec![d_out, d_in],
                &one(&format!("{a}.{lin}.weight")),
                Layout::Transpose,
            ));
            if config.bias {
                rows.push(row(
                    format!("{h}.{hf_lin}.bias"),
                    vec![d_out],
                    &one(&format!("{a}.{lin}.bias")),
                    Layout::Same,
                ));
            }
        }
    }
    rows.push(row(
        "model.norm.weight".into(),
        vec![c],
        &one("ln_f.weight"),
        Layout::Same,
    ));
    rows
}

/// Hugging Face tensors that carry no weights (causal-mask and RoPE buffers of older files).
pub fn is_buffer(hf_key: &str) -> bool {
    hf_key.ends_with(".attn.bias") && !hf_key.contains("c_attn")
        || hf_key.ends_with(".attn.masked_bias")
        || hf_key.ends_with("rotary_emb.inv_freq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_every_parameter_exactly_once() {
        for (arch, config) in [
            (HfArchitecture::Gpt2, ModelConfig::gpt2_124m()),
            (HfArchitecture::Llama, ModelConfig::arcane_124m()),
        ] {
            let rows = key_table(arch, &config);
            let hf_params: usize = rows
                .iter()
                .map(|r| r.hf_shape.iter().product::<usize>())
                .sum();
            assert_eq!(hf_params, config.num_params(), "{arch:?}");
            let mut paths: Vec<_> = rows.iter().flat_map(|r| r.arcane.clone()).collect();
            let n = paths.len();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), n, "{arch:?}: an Arcane path appears twice");
        }
    }
}
