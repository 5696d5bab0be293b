//! The one table between Hugging Face tensor names and Arcane parameter paths.
//!
//! Every translation of checkpoint keys happens here (as llama-burn's `KeyRemapper` and
//! candle's `into_config` do it), in both directions, with the layout change each key needs.

use super::arch::HfArchitecture;
use crate::model::ModelConfig;

/// How a Hugging Face tensor's layout relates to the Arcane parameter(s) it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Same values, same shape (embeddings, norms, biases, GPT-2's `Conv1D` weights, which are
    /// stored `[in, out]` like Burn's `Linear`).
    Same,
    /// `nn.Linear` stores `[out, in]`; Burn's `Linear` stores `[in, out]`.
    Transpose,
    /// One fused tensor whose last dimension concatenates several Arcane parameters
    /// (GPT-2's `c_attn` = q | k | v), of the widths in [`KeyMap::split`].
    SplitLast,
    /// An `nn.Linear` weight `[out, in]` whose rows concatenate several Arcane projections
    /// (Phi-3's `qkv_proj` = q | k | v, `gate_up_proj` = gate | up): transposed, then split
    /// along the last dimension into the widths in [`KeyMap::split`].
    TransposeSplit,
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
    /// For the split layouts, the width of each Arcane parameter along the split dimension
    /// (in the order of `arcane`); empty otherwise.
    pub split: Vec<usize>,
}

fn row(hf: String, hf_shape: Vec<usize>, arcane: &[String], layout: Layout) -> KeyMap {
    KeyMap {
        hf,
        hf_shape,
        arcane: arcane.to_vec(),
        layout,
        split: Vec::new(),
    }
}

/// A row of a fused tensor split into parts of `widths`.
fn split_row(
    hf: String,
    hf_shape: Vec<usize>,
    arcane: &[String],
    layout: Layout,
    widths: &[usize],
) -> KeyMap {
    KeyMap {
        split: widths.to_vec(),
        ..row(hf, hf_shape, arcane, layout)
    }
}

/// All tensors of `arch` for a model of `config`, in file order.
pub fn key_table(arch: HfArchitecture, config: &ModelConfig) -> Vec<KeyMap> {
    let mut rows = match arch {
        HfArchitecture::Gpt2 => gpt2_rows(config),
        arch => decoder_rows(arch, config),
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
        rows.push(split_row(
            format!("{h}.attn.c_attn.weight"),
            vec![c, 3 * c],
            &qkv("weight"),
            Layout::SplitLast,
            &[c; 3],
        ));
        rows.push(split_row(
            format!("{h}.attn.c_attn.bias"),
            vec![3 * c],
            &qkv("bias"),
            Layout::SplitLast,
            &[c; 3],
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

/// The body of `LlamaForCausalLM` and its relatives: `nn.Linear` weights `[out, in]`, separate
/// projections (fused into `qkv_proj` and `gate_up_proj` by Phi-3), biases and per-head q/k
/// norms as the config switches them on.
fn decoder_rows(arch: HfArchitecture, config: &ModelConfig) -> Vec<KeyMap> {
    let (c, v) = (config.d_model, config.vocab_size);
    let mut rows = Vec::new();
    rows.push(row(
        "model.embed_tokens.weight".into(),
        vec![v, c],
        &one("wte.weight"),
        Layout::Same,
    ));
    for i in 0..config.n_layers {
        let (h, a) = (format!("model.layers.{i}"), format!("blocks.{i}"));
        let norms = [
            ("input_layernorm", "ln1", c),
            ("post_attention_layernorm", "ln2", c),
            ("self_attn.q_norm", "attn.q_norm", config.head_dim()),
            ("self_attn.k_norm", "attn.k_norm", config.head_dim()),
        ];
        let n_norms = if config.qk_norm { 4 } else { 2 };
        for (hf_norm, norm, width) in &norms[..n_norms] {
            rows.push(row(
                format!("{h}.{hf_norm}.weight"),
                vec![*width],
                &one(&format!("{a}.{norm}.weight")),
                Layout::Same,
            ));
        }
        if arch == HfArchitecture::Phi3 {
            rows.extend(phi3_layer_rows(config, &h, &a));
        } else {
            rows.extend(projection_rows(config, &h, &a));
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

/// The projections of one layer, `(hf name, arcane name, [in, out], bias)`.
fn projections(config: &ModelConfig) -> Vec<(&'static str, &'static str, [usize; 2], bool)> {
    let (c, f, d) = (config.d_model, config.hidden_size(), config.head_dim());
    let (q, kv) = (config.n_heads * d, config.kv_heads() * d);
    let (bias, qkv_bias) = (config.bias, config.bias || config.qkv_bias);
    let mut p = vec![
        ("self_attn.q_proj", "attn.q", [c, q], qkv_bias),
        ("self_attn.k_proj", "attn.k", [c, kv], qkv_bias),
        ("self_attn.v_proj", "attn.v", [c, kv], qkv_bias),
        ("self_attn.o_proj", "attn.o", [q, c], bias),
        ("mlp.up_proj", "mlp.fc", [c, f], bias),
        ("mlp.down_proj", "mlp.proj", [f, c], bias),
    ];
    if config.mlp.gated() {
        p.push(("mlp.gate_proj", "mlp.gate", [c, f], bias));
    }
    p
}

/// One layer's separate `nn.Linear` projections, with their biases where they have one.
fn projection_rows(config: &ModelConfig, h: &str, a: &str) -> Vec<KeyMap> {
    let mut rows = Vec::new();
    for (hf_lin, lin, [d_in, d_out], bias) in projections(config) {
        rows.push(row(
            format!("{h}.{hf_lin}.weight"),
            vec![d_out, d_in],
            &one(&format!("{a}.{lin}.weight")),
            Layout::Transpose,
        ));
        if bias {
            rows.push(row(
                format!("{h}.{hf_lin}.bias"),
                vec![d_out],
                &one(&format!("{a}.{lin}.bias")),
                Layout::Same,
            ));
        }
    }
    rows
}

/// One Phi-3 layer: `qkv_proj` `[(H + 2·Hkv)·D, C]` and `gate_up_proj` `[2·F, C]` (gate first,
/// as `Phi3MLP` chunks it) are split on import and fused again on export, so that LoRA and
/// everything else see separate projections. Phi-3 has no biases.
fn phi3_layer_rows(config: &ModelConfig, h: &str, a: &str) -> Vec<KeyMap> {
    let (c, f, d) = (config.d_model, config.hidden_size(), config.head_dim());
    let (q, kv) = (config.n_heads * d, config.kv_heads() * d);
    let path = |p: &str| format!("{a}.{p}.weight");
    vec![
        split_row(
            format!("{h}.self_attn.qkv_proj.weight"),
            vec![q + 2 * kv, c],
            &[path("attn.q"), path("attn.k"), path("attn.v")],
            Layout::TransposeSplit,
            &[q, kv, kv],
        ),
        row(
            format!("{h}.self_attn.o_proj.weight"),
            vec![c, q],
            &one(&path("attn.o")),
            Layout::Transpose,
        ),
        split_row(
            format!("{h}.mlp.gate_up_proj.weight"),
            vec![2 * f, c],
            &[path("mlp.gate"), path("mlp.fc")],
            Layout::TransposeSplit,
            &[f, f],
        ),
        row(
            format!("{h}.mlp.down_proj.weight"),
            vec![c, f],
            &one(&path("mlp.proj")),
            Layout::Transpose,
        ),
    ]
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

    use crate::model::{MlpKind, NormKind};

    /// A config of each architecture with its own switches on.
    fn configs() -> Vec<(HfArchitecture, ModelConfig)> {
        let llama = ModelConfig {
            n_kv_heads: Some(4),
            tie_embeddings: false,
            ..ModelConfig::arcane_124m()
        };
        vec![
            (HfArchitecture::Gpt2, ModelConfig::gpt2_124m()),
            (HfArchitecture::Llama, ModelConfig::arcane_124m()),
            (HfArchitecture::Mistral, llama.clone()),
            (HfArchitecture::Phi3, llama.clone()),
            (
                HfArchitecture::Qwen2,
                ModelConfig {
                    qkv_bias: true,
                    ..llama.clone()
                },
            ),
            (
                HfArchitecture::Qwen3,
                ModelConfig {
                    qk_norm: true,
                    head_dim: Some(128),
                    ..llama.clone()
                },
            ),
            (
                HfArchitecture::Gemma,
                ModelConfig {
                    norm: NormKind::RmsNormPlusOne,
                    mlp: MlpKind::Geglu,
                    embedding_scale: true,
                    head_dim: Some(256),
                    tie_embeddings: true,
                    ..llama
                },
            ),
        ]
    }

    #[test]
    fn the_table_covers_every_parameter_exactly_once() {
        for (arch, config) in configs() {
            assert!(arch.represents(&config), "{arch:?}");
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
            for r in rows.iter().filter(|r| !r.split.is_empty()) {
                let fused = match r.layout {
                    Layout::TransposeSplit => r.hf_shape[0],
                    _ => *r.hf_shape.last().unwrap(),
                };
                assert_eq!(r.split.iter().sum::<usize>(), fused, "{}", r.hf);
            }
        }
    }

    #[test]
    fn an_export_keeps_the_recorded_class_when_it_can() {
        let (_, mistral) = &configs()[2];
        assert_eq!(
            HfArchitecture::for_config(mistral),
            Some(HfArchitecture::Llama)
        );
        for class in ["MistralForCausalLM", "Phi3ForCausalLM", "LlamaForCausalLM"] {
            let recorded = ModelConfig {
                hf_architecture: Some(class.into()),
                ..mistral.clone()
            };
            let arch = HfArchitecture::for_config(&recorded).unwrap();
            assert_eq!(arch.class_name(), class);
        }
        // A recorded class that cannot hold the model gives way to one that can.
        let qwen2 = ModelConfig {
            hf_architecture: Some("MistralForCausalLM".into()),
            ..configs()[4].1.clone()
        };
        assert_eq!(
            HfArchitecture::for_config(&qwen2),
            Some(HfArchitecture::Qwen2)
        );
    }
}
