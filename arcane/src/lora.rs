//! LoRA (Hu et al. 2021, arXiv:2106.09685): a frozen base projection plus a trainable low-rank
//! update, `y = x·W + b + (alpha / r) · dropout(x)·A·B`, with `A` `[in, r]` drawn as PyTorch's
//! Linear init (Kaiming-uniform, as peft) and `B` `[r, out]` zero, so a fresh adapter changes
//! nothing. Every projection of the model is a [`LoraLinear`]; without an adapter it is a plain
//! linear layer with the same parameter names (`weight`, `bias`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::module::linear;
use serde::{Deserialize, Serialize};

use crate::error::{ArcaneError, Result};
use crate::model::{Gpt, ModelConfig};
use crate::weights::{self, NamedTensors};

/// Which projections get adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// Attention query projection.
    Q,
    /// Attention key projection.
    K,
    /// Attention value projection.
    V,
    /// Attention output projection.
    O,
    /// Every MLP projection (fc, gate, proj).
    Mlp,
    /// The output head (needs an untied head).
    Head,
}

impl LoraTarget {
    /// Every target.
    pub const ALL: [LoraTarget; 6] = [Self::Q, Self::K, Self::V, Self::O, Self::Mlp, Self::Head];
}

impl FromStr for LoraTarget {
    type Err = ArcaneError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "q" => Self::Q,
            "k" => Self::K,
            "v" => Self::V,
            "o" => Self::O,
            "mlp" => Self::Mlp,
            "head" => Self::Head,
            other => {
                return Err(ArcaneError::InvalidInput(format!(
                    "unknown LoRA target {other:?}; choose from q, k, v, o, mlp, head"
                )))
            }
        })
    }
}

/// Rank, scale, dropout and targets of the adapters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Projections that get adapters (the seed's default: query and key).
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec![LoraTarget::Q, LoraTarget::K],
        }
    }
}

impl LoraConfig {
    /// Checks rank, alpha, dropout and targets against the model they will be applied to.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        let fail = |m: String| Err(ArcaneError::InvalidInput(m));
        if self.rank == 0 {
            return fail("the LoRA rank must be at least 1".into());
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return fail(format!("LoRA alpha must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return fail("give at least one LoRA target (q, k, v, o, mlp, head)".into());
        }
        if self.targets.contains(&LoraTarget::Head) && model.tie_embeddings {
            return fail(
                "the head target needs an untied head; this model ties it to the token embedding"
                    .into(),
            );
        }
        if self.rank > model.d_model {
            return fail(format!(
                "LoRA rank {} exceeds the model width {}",
                self.rank, model.d_model
            ));
        }
        Ok(())
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Number of adapter parameters these settings add to a model of `model`'s shape:
    /// `r · (in + out)` per adapted projection.
    pub fn trainable_params(&self, model: &ModelConfig) -> usize {
        let (c, f, kv, r) = (
            model.d_model,
            model.hidden_size(),
            model.kv_heads() * model.head_dim(),
            self.rank,
        );
        let has = |t| self.targets.contains(&t);
        let mut per_layer = 0;
        for (target, d_in, d_out) in [
            (LoraTarget::Q, c, c),
            (LoraTarget::K, c, kv),
            (LoraTarget::V, c, kv),
            (LoraTarget::O, c, c),
        ] {
            if has(target) {
                per_layer += r * (d_in + d_out);
            }
        }
        if has(LoraTarget::Mlp) {
            let projections = if model.mlp == crate::model::MlpKind::Swiglu {
                3
            } else {
                2
            };
            per_layer += projections * r * (c + f);
        }
        let head = if has(LoraTarget::Head) && !model.tie_embeddings {
            r * (c + model.vocab_size)
        } else {
            0
        };
        model.n_layers * per_layer + head
    }
}

/// The trainable low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[in, r]`
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]`, zero at first.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / r`.
    pub scale: f64,
    /// Dropout on the input of the update.
    pub dropout: Dropout,
    /// True once folded into the base weight (the forward then skips it).
    pub merged: bool,
}

impl<B: Backend> LoraAdapter<B> {
    /// `scale · A·B`, the update in the base weight's layout `[in, out]`.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()) * self.scale
    }
}

/// A linear projection `[in, out]` that may carry a LoRA adapter.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// Base weight `[in, out]` (Burn's layout; frozen when an adapter is attached).
    pub weight: Param<Tensor<B, 2>>,
    /// Base bias `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The adapter, if any.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> LoraLinear<B> {
    /// A projection with weight N(0, std²) and zero bias, without adapter.
    pub fn new(d_in: usize, d_out: usize, bias: bool, std: f64, device: &B::Device) -> Self {
        Self {
            weight: Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device),
            bias: bias.then(|| Initializer::Zeros.init([d_out], device)),
            lora: None,
        }
    }

    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let base = linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match &self.lora {
            Some(l) if !l.merged => {
                let update = l
                    .dropout
                    .forward(x)
                    .matmul(l.a.val().unsqueeze())
                    .matmul(l.b.val().unsqueeze());
                base + update * l.scale
            }
            _ => base,
        }
    }

    fn attach(mut self, config: &LoraConfig, device: &B::Device) -> Self {
        let [d_in, d_out] = self.weight.lazy_shape().dims();
        let r = config.rank;
        // Kaiming-uniform with a = sqrt(5), PyTorch's Linear init and peft's choice for A:
        // U(-1/sqrt(in), 1/sqrt(in)).
        let kaiming = Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        };
        self.lora = Some(LoraAdapter {
            a: kaiming.init_with([d_in, r], Some(d_in), Some(r), device),
            b: Initializer::Zeros.init([r, d_out], device),
            scale: config.scale(),
            dropout: DropoutConfig::new(config.dropout).init(),
            merged: false,
        });
        self
    }

    fn set_merged(mut self, merge: bool) -> Self {
        if let Some(mut l) = self.lora.take() {
            if l.merged != merge {
                let delta = l.delta();
                let w = self.weight.val();
                let w = if merge { w + delta } else { w - delta };
                self.weight = Param::initialized(self.weight.id, w.set_require_grad(false));
                l.merged = merge;
            }
            self.lora = Some(l);
        }
        self
    }
}

/// Applies `f` to every projection that `targets` selects.
fn map_targets<B: Backend>(
    mut model: Gpt<B>,
    targets: &[LoraTarget],
    mut f: impl FnMut(LoraLinear<B>) -> LoraLinear<B>,
) -> Gpt<B> {
    let has = |t| targets.contains(&t);
    for block in model.blocks.iter_mut() {
        let attn = &mut block.attn;
        for (target, proj) in [
            (LoraTarget::Q, &mut attn.q),
            (LoraTarget::K, &mut attn.k),
            (LoraTarget::V, &mut attn.v),
            (LoraTarget::O, &mut attn.o),
        ] {
            if has(target) {
                take_map(proj, &mut f);
            }
        }
        if has(LoraTarget::Mlp) {
            let mlp = &mut block.mlp;
            take_map(&mut mlp.fc, &mut f);
            take_map(&mut mlp.proj, &mut f);
            if let Some(gate) = mlp.gate.as_mut() {
                take_map(gate, &mut f);
            }
        }
    }
    if has(LoraTarget::Head) {
        if let Some(head) = model.lm_head.as_mut() {
            take_map(head, &mut f);
        }
    }
    model
}

fn take_map<B: Backend>(
    proj: &mut LoraLinear<B>,
    f: &mut impl FnMut(LoraLinear<B>) -> LoraLinear<B>,
) {
    // A placeholder without tensors while `f` owns the projection.
    let placeholder = LoraLinear {
        weight: proj.weight.clone(),
        bias: None,
        lora: None,
    };
    let owned = std::mem::replace(proj, placeholder);
    *proj = f(owned);
}

/// Freezes every parameter of `model` and attaches fresh adapters to the targets of `config`.
/// The result computes exactly what `model` computes until the adapters are trained.
pub fn apply_lora<B: Backend>(model: Gpt<B>, config: &LoraConfig) -> Result<Gpt<B>> {
    config.validate(model.config())?;
    if model.lora.is_some() {
        return Err(ArcaneError::InvalidInput(
            "the model already carries LoRA adapters".into(),
        ));
    }
    let device = model.device();
    let mut model = map_targets(model.no_grad(), &config.targets, |p| {
        p.attach(config, &device)
    });
    model.lora = Some(config.clone());
    Ok(model)
}

/// Folds every adapter into its base weight (`W + scale·A·B`); the forward then skips them.
pub fn merge<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    map_targets(model, &LoraTarget::ALL, |p| p.set_merged(true))
}

/// Undoes [`merge`]: subtracts each adapter's update from its base weight again.
pub fn unmerge<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    map_targets(model, &LoraTarget::ALL, |p| p.set_merged(false))
}

/// Merges and drops the adapters: a plain model to save in the Arcane or Hugging Face format.
pub fn merge_and_unload<B: Backend>(model: Gpt<B>) -> Gpt<B> {
    let mut model = map_targets(merge(model), &LoraTarget::ALL, |mut p| {
        p.lora = None;
        p
    });
    model.lora = None;
    model
}

/// (trainable, total) parameter counts.
pub fn parameter_counts<B: Backend>(model: &Gpt<B>) -> (usize, usize) {
    let adapters: usize = adapter_tensors(model)
        .values()
        .map(|t| t.values.len())
        .sum();
    let total = model.num_params();
    if model.lora.is_some() {
        (adapters, total)
    } else {
        (total, total)
    }
}

fn adapter_tensors<B: Backend>(model: &Gpt<B>) -> NamedTensors {
    weights::collect(model)
        .into_iter()
        .filter(|(name, _)| name.contains(".lora."))
        .collect()
}

/// File names of an adapter directory.
pub const ADAPTER_MANIFEST: &str = "adapter.json";
/// Weights file of an adapter directory.
pub const ADAPTER_WEIGHTS: &str = "adapter.safetensors";

/// `adapter.json`: what the adapter is and which base it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterManifest {
    /// Always "arcane-lora".
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Rank, alpha, dropout, targets.
    pub lora: LoraConfig,
    /// The architecture of the base model the adapter was trained on.
    pub base_config: ModelConfig,
    /// Where the base model came from, for people (not checked).
    pub base_source: String,
}

/// Saves only the adapters of `model` (a small file) and a manifest naming the base.
pub fn save_adapter<B: Backend>(model: &Gpt<B>, dir: &Path, base_source: &str) -> Result<()> {
    let lora = model.lora.clone().ok_or_else(|| {
        ArcaneError::InvalidInput("the model has no LoRA adapters to save".into())
    })?;
    std::fs::create_dir_all(dir).map_err(|e| ArcaneError::io(dir, e))?;
    let meta = HashMap::from([("format".to_string(), "arcane-lora".to_string())]);
    weights::write_safetensors(&dir.join(ADAPTER_WEIGHTS), &adapter_tensors(model), meta)?;
    let manifest = AdapterManifest {
        format: "arcane-lora".into(),
        version: 1,
        lora,
        base_config: model.config().clone(),
        base_source: base_source.into(),
    };
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    weights::write_atomic(&dir.join(ADAPTER_MANIFEST), json.as_bytes())
}

/// True if `dir` holds an adapter.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_MANIFEST).is_file()
}

/// Reads and checks `adapter.json`.
pub fn read_adapter_manifest(dir: &Path) -> Result<AdapterManifest> {
    let path = dir.join(ADAPTER_MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| ArcaneError::io(&path, e))?;
    let manifest: AdapterManifest = serde_json::from_str(&text).map_err(|e| {
        ArcaneError::format(&path, format!("not an Arcane LoRA adapter manifest ({e})"))
    })?;
    if manifest.format != "arcane-lora" || manifest.version != 1 {
        return Err(ArcaneError::format(
            &path,
            "not an Arcane LoRA adapter of version 1",
        ));
    }
    Ok(manifest)
}

/// Attaches the adapter saved in `dir` to `base`, restoring the fine-tuned model exactly.
/// Fails if the adapter was trained on a base of another architecture or shape.
pub fn load_adapter<B: Backend>(base: Gpt<B>, dir: &Path) -> Result<Gpt<B>> {
    let manifest = read_adapter_manifest(dir)?;
    if &manifest.base_config != base.config() {
        return Err(ArcaneError::format(
            dir,
            format!(
                "this adapter was trained on another base model ({}); load it onto that model",
                describe_difference(&manifest.base_config, base.config())
            ),
        ));
    }
    let path = dir.join(ADAPTER_WEIGHTS);
    let tensors = weights::read_safetensors(std::slice::from_ref(&path))?;
    let model = apply_lora(base, &manifest.lora)?;
    weights::apply_subset(model, tensors, &path)
}

fn describe_difference(adapter: &ModelConfig, base: &ModelConfig) -> String {
    let a = serde_json::to_value(adapter).unwrap_or_default();
    let b = serde_json::to_value(base).unwrap_or_default();
    let (a, b): (
        BTreeMap<String, serde_json::Value>,
        BTreeMap<String, serde_json::Value>,
    ) = (
        serde_json::from_value(a).unwrap_or_default(),
        serde_json::from_value(b).unwrap_or_default(),
    );
    let diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k} {v} vs {}", b.get(k).cloned().unwrap_or_default()))
        .collect();
    diffs.join(", ")
}
