//! Weights stored in bf16 for inference (`generate`, `eval`, `bench decode` with `--precision
//! bf16`): decoding one token reads every weight once, so it is bound by memory bandwidth, and
//! bf16 weights (the upper 16 bits of an f32, rounded to nearest even) halve the bytes read.
//!
//! Only the matrices that the products read are converted: the weight of every projection
//! (`Linear`) and, when the head is tied to it, the token embedding table. Biases, norms,
//! learned positions and LoRA adapters stay f32 (small, and norms need f32 statistics), and so
//! do activations and accumulations on the CPU backend (see `kernels::linear`). The model is for
//! inference only afterwards: training needs f32 master weights (see [`Precision`]).

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::gpt::Gpt;
use super::precision::Precision;
use crate::kernels;

impl<B: Backend> Gpt<B> {
    /// This model with the weights of its projections (and its tied head) stored in bf16,
    /// rounded to nearest even, for inference. Activations keep the model's precision.
    pub fn with_bf16_weights(self) -> Self {
        let tied = self.lm_head.is_none();
        let mut model = self.map(&mut ToBf16 {
            containers: Vec::new(),
            tied,
        });
        model.weights_bf16 = true;
        model
    }

    /// True when the projections' weights are stored in bf16 ([`Self::with_bf16_weights`]).
    pub fn has_bf16_weights(&self) -> bool {
        self.weights_bf16
    }

    /// The model prepared for inference in `precision`, on a backend whose activations are f32
    /// unless `bf16_activations` (GPUs with bf16 tensor cores): `Bf16` stores the weights in
    /// bf16 and, when `bf16_activations`, computes in bf16 too; `F32` and `Auto` change
    /// nothing.
    pub fn for_inference(mut self, precision: Precision, bf16_activations: bool) -> Self {
        if precision != Precision::Bf16 {
            return self;
        }
        if bf16_activations {
            self.precision = Precision::Bf16;
        }
        self.with_bf16_weights()
    }
}

/// Converts the 2-D weights of `Linear` modules, and of the `wte` embedding when `tied`.
struct ToBf16 {
    /// `(name, container type)` of the modules entered.
    containers: Vec<(String, String)>,
    tied: bool,
}

impl<B: Backend> ModuleMapper<B> for ToBf16 {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.containers.push((name.into(), container_type.into()));
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        // Burn names each field with the type of the struct holding it: a projection's matrix
        // is `weight` of a `Linear`, the tied table `weight` of the `Embedding` field `wte`.
        let field = |i: usize| {
            let n = self.containers.len();
            (n > i).then(|| self.containers[n - 1 - i].clone())
        };
        let is = |f: Option<(String, String)>, name: &str, ty: &str| {
            f.is_some_and(|(n, t)| n == name && t == ty)
        };
        let projection = is(field(0), "weight", "Struct:Linear");
        let table = is(field(0), "weight", "Struct:Embedding") && is(field(1), "wte", "Struct:Gpt");
        let convert = D == 2 && (projection || (self.tied && table));
        if !convert || param.val().dtype() == DType::BF16 {
            return param;
        }
        let id = param.id;
        let value = kernels::cast(param.val(), FloatDType::BF16);
        Param::initialized(id, value.set_require_grad(false))
    }
}
