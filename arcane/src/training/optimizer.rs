//! AdamW with parameter groups, which Burn 0.21 lacks: weight matrices decay, biases and norm
//! gains do not (GPT-2 / nanoGPT's `configure_optimizers`). It implements Burn's [`Optimizer`],
//! so the Learner drives it like any other; each parameter is routed to its group by id.
//!
//! Each parameter's update is [`FusedAdamW`]: Burn's `AdamW` arithmetic in one in-place pass on
//! the CPU backend ([`kernels::adamw`]) instead of ~12 tensor operations that each allocate a
//! parameter-sized buffer. Its state is Burn's `AdamWState`, so optimizer checkpoints keep
//! their format. For mixed precision (f32 master weights and moments beside bf16 compute
//! weights), the state can grow a master copy that `FusedAdamW::step` updates in f32 and casts
//! back; the kernel and the record of the moments stay as they are.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::config::OptimizerConfig;
use crate::kernels::{self, AdamWStep};

/// AdamW (Loshchilov & Hutter 2019) on one parameter at a time, as Burn's `AdamW` without
/// AMSGrad or cautious decay: `m = β₁m + (1-β₁)g`, `v = β₂v + (1-β₂)g²`,
/// `p = p·(1 - lr·λ) - lr·(m/(1-β₁ᵗ)) / (sqrt(v/(1-β₂ᵗ)) + ε)`.
#[derive(Clone, Debug)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl FusedAdamW {
    /// AdamW with the betas and epsilon of `config` and decay `weight_decay`.
    pub fn new(config: &OptimizerConfig, weight_decay: f64) -> Self {
        Self {
            beta_1: config.beta1 as f32,
            beta_2: config.beta2 as f32,
            epsilon: config.epsilon as f32,
            weight_decay: weight_decay as f32,
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(0, |s| s.momentum.time) + 1;
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let step = AdamWStep {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            lr: lr as f32,
            // Burn computes the decay factor in f64, then applies it in the tensor's dtype.
            decay: (1.0 - lr * self.weight_decay as f64) as f32,
            correction_1: 1.0 - self.beta_1.powi(time as i32),
            correction_2: 1.0 - self.beta_2.powi(time as i32),
        };
        let (tensor, m, v) = kernels::adamw(tensor, grad, moments, step);
        let momentum = AdaptiveMomentumState::new(time, m, v);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// Which group each parameter belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamGroups {
    /// Parameters with weight decay (weight matrices, and embeddings if configured).
    pub decay: Vec<String>,
    /// Parameters without (biases, norm gains, and embeddings if configured).
    pub no_decay: Vec<String>,
    decay_ids: HashSet<ParamId>,
}

impl ParamGroups {
    /// Sorts the parameters of `module` into groups: every tensor of rank 2 or more decays,
    /// except the embedding tables (`wte`, `wpe`) when `decay_embeddings` is false.
    pub fn of<B: Backend, M: Module<B>>(module: &M, decay_embeddings: bool) -> Self {
        let mut visitor = GroupVisitor {
            path: vec![],
            groups: Self::default(),
            decay_embeddings,
        };
        module.visit(&mut visitor);
        visitor.groups
    }

    /// True if the parameter decays.
    pub fn decays(&self, id: &ParamId) -> bool {
        self.decay_ids.contains(id)
    }
}

struct GroupVisitor {
    path: Vec<String>,
    groups: ParamGroups,
    decay_embeddings: bool,
}

impl<B: Backend> ModuleVisitor<B> for GroupVisitor {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = self.path.join(".");
        let embedding = matches!(name.as_str(), "wte.weight" | "wpe.weight");
        if D >= 2 && (self.decay_embeddings || !embedding) {
            self.groups.decay_ids.insert(param.id);
            self.groups.decay.push(name);
        } else {
            self.groups.no_decay.push(name);
        }
    }
}

/// Moves the gradients of parameters that decay out of `grads` into a new set.
struct GradSplitter<'a> {
    groups: &'a ParamGroups,
    from: &'a mut GradientsParams,
    to: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradSplitter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.groups.decays(&param.id) {
            if let Some(grad) = self.from.remove::<B::InnerBackend, D>(param.id) {
                self.to.register::<B::InnerBackend, D>(param.id, grad);
            }
        }
    }
}

/// Two AdamW optimizers, one per group, sharing everything but the weight decay.
///
/// Groups are worked out from the module at every step, not once: loading a checkpoint gives
/// the parameters the ids they were saved with, and the moments are keyed by those ids.
#[derive(Clone)]
pub struct GroupedAdamW<M: AutodiffModule<B>, B: AutodiffBackend> {
    decay: OptimizerAdaptor<FusedAdamW, M, B>,
    no_decay: OptimizerAdaptor<FusedAdamW, M, B>,
    decay_embeddings: bool,
}

/// The optimizer state of both groups (moments and step counts per parameter id): decay
/// group first.
pub type GroupedAdamWRecord<M, B> = (
    <OptimizerAdaptor<FusedAdamW, M, B> as Optimizer<M, B>>::Record,
    <OptimizerAdaptor<FusedAdamW, M, B> as Optimizer<M, B>>::Record,
);

impl<M: AutodiffModule<B>, B: AutodiffBackend> GroupedAdamW<M, B> {
    /// The optimizer of `config` for the parameters of modules like `module`.
    pub fn new(config: &OptimizerConfig, _module: &M) -> Self {
        let adamw =
            |weight_decay: f64| OptimizerAdaptor::from(FusedAdamW::new(config, weight_decay));
        Self {
            decay: adamw(config.weight_decay),
            no_decay: adamw(0.0),
            decay_embeddings: config.decay_embeddings,
        }
    }

    /// The parameter groups of `module`.
    pub fn groups(&self, module: &M) -> ParamGroups {
        ParamGroups::of(module, self.decay_embeddings)
    }

    fn split(&self, module: &M, mut grads: GradientsParams) -> (GradientsParams, GradientsParams) {
        let groups = self.groups(module);
        let mut splitter = GradSplitter {
            groups: &groups,
            from: &mut grads,
            to: GradientsParams::new(),
        };
        module.visit(&mut splitter);
        let decay = splitter.to;
        (decay, grads)
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optimizer<M, B> for GroupedAdamW<M, B> {
    type Record = GroupedAdamWRecord<M, B>;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        let (decay, no_decay) = self.split(&module, grads);
        let module = self.decay.step(lr, module, decay);
        self.no_decay.step(lr, module, no_decay)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        let (mut decay, mut no_decay) = (Vec::new(), Vec::new());
        for (g, device) in grads.grads {
            let (d, n) = self.split(&module, g);
            decay.push((d, device.clone()));
            no_decay.push((n, device));
        }
        let module = self
            .decay
            .step_multi(lr, module, MultiGradientsParams { grads: decay });
        self.no_decay
            .step_multi(lr, module, MultiGradientsParams { grads: no_decay })
    }

    fn to_record(&self) -> Self::Record {
        (self.decay.to_record(), self.no_decay.to_record())
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.decay = self.decay.load_record(record.0);
        self.no_decay = self.no_decay.load_record(record.1);
        self
    }
}
