//! AdamW with parameter groups, which Burn 0.21 lacks: weight matrices decay, biases and norm
//! gains do not (GPT-2 / nanoGPT's `configure_optimizers`). It implements Burn's [`Optimizer`],
//! so the Learner drives it like any other; each parameter is routed to its group by id.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::LearningRate;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::config::OptimizerConfig;

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
    decay: OptimizerAdaptor<AdamW, M, B>,
    no_decay: OptimizerAdaptor<AdamW, M, B>,
    decay_embeddings: bool,
}

/// The optimizer state of both groups (moments and step counts per parameter id): decay
/// group first.
pub type GroupedAdamWRecord<M, B> = (
    <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record,
    <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record,
);

impl<M: AutodiffModule<B>, B: AutodiffBackend> GroupedAdamW<M, B> {
    /// The optimizer of `config` for the parameters of modules like `module`.
    pub fn new(config: &OptimizerConfig, _module: &M) -> Self {
        let adamw = |weight_decay: f64| {
            AdamWConfig::new()
                .with_beta_1(config.beta1 as f32)
                .with_beta_2(config.beta2 as f32)
                .with_epsilon(config.epsilon as f32)
                .with_weight_decay(weight_decay as f32)
                .init::<B, M>()
        };
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
