//! A scalar head on the final hidden states: the reward model's score and PPO's value.

use burn::module::Initializer;
use burn::prelude::*;

use crate::model::Linear;

/// A linear map `[C] -> [1]` with a bias.
#[derive(Module, Debug)]
pub struct ScalarHead<B: Backend> {
    /// `[C, 1]` weight and `[1]` bias.
    pub linear: Linear<B>,
}

impl<B: Backend> ScalarHead<B> {
    /// Weights drawn from N(0, std²) (all zero when `std` is 0), bias zero.
    ///
    /// The reward head uses `std = 1/sqrt(C + 1)` (lm-human-preferences' reward init); the
    /// value head is zero (`layer_init(std=0)` in TRL's PPO), so that values start at 0 and
    /// the first advantages are the rewards themselves.
    pub fn new(d_model: usize, std: f64, device: &B::Device) -> Self {
        let weight = if std == 0.0 {
            Initializer::Zeros.init([d_model, 1], device)
        } else {
            Initializer::Normal { mean: 0.0, std }.init([d_model, 1], device)
        };
        Self {
            linear: Linear {
                weight,
                bias: Some(Initializer::Zeros.init([1], device)),
                lora: None,
            },
        }
    }

    /// # Shapes
    /// - hidden: `[B, T, C]`
    /// - output: `[B, T]`
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        self.linear.forward(hidden).squeeze_dim(2)
    }

    /// # Shapes
    /// - hidden: `[B, C]`
    /// - output: `[B]`
    pub fn forward_rows(&self, hidden: Tensor<B, 2>) -> Tensor<B, 1> {
        self.linear.forward(hidden).squeeze_dim(1)
    }
}
