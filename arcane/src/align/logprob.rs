//! Log-probabilities of given tokens under a model: `log π(y|x) = Σ_t log softmax(z_t / T)[y_t]`
//! over completion tokens only (prompt and padding masked).
//!
//! The softmax runs over the first `vocab_limit` logits only, the ids a sampler may draw, so
//! that the probabilities scored are those of the distribution that was sampled (a vocabulary
//! padded to 50304 would otherwise leak mass to ids no tokenizer emits).

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use super::batch::SeqBatch;
use crate::model::Gpt;

fn scaled<B: Backend>(logits: Tensor<B, 3>, temperature: f64, vocab_limit: usize) -> Tensor<B, 3> {
    let v = logits.dims()[2];
    let logits = if vocab_limit < v {
        logits.narrow(2, 0, vocab_limit)
    } else {
        logits
    };
    if temperature == 1.0 {
        logits
    } else {
        logits / temperature
    }
}

/// Log-probability of each target under `softmax(logits / temperature)` over the first
/// `vocab_limit` ids. Every target must be below `vocab_limit`.
///
/// # Shapes
/// - logits: `[B, T, V]`
/// - targets: `[B, T]`
/// - output: `[B, T]`
pub fn token_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    temperature: f64,
    vocab_limit: usize,
) -> Tensor<B, 2> {
    log_softmax(scaled(logits, temperature, vocab_limit), 2)
        .gather(2, targets.unsqueeze_dim(2))
        .squeeze_dim(2)
}

/// Entropy `-Σ_v p log p` of the sampling distribution at each position.
///
/// # Shapes
/// - logits: `[B, T, V]`
/// - output: `[B, T]`
pub fn token_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    temperature: f64,
    vocab_limit: usize,
) -> Tensor<B, 2> {
    let z = scaled(logits, temperature, vocab_limit);
    let logp = log_softmax(z.clone(), 2);
    (softmax(z, 2) * logp).sum_dim(2).squeeze_dim::<2>(2).neg()
}

/// Summed log-probability of each sequence's completion (with `mean`, divided by the
/// completion's length: TRL's length normalisation for IPO), at temperature 1.
///
/// # Shapes
/// - output: `[B]`
pub fn sequence_logprobs<B: Backend>(
    model: &Gpt<B>,
    batch: &SeqBatch<B>,
    vocab_limit: usize,
    mean: bool,
) -> Tensor<B, 1> {
    let [b, t] = batch.tokens.dims();
    let inputs = batch.tokens.clone().narrow(1, 0, t - 1); // [B, T-1]
    let logits = model.forward(inputs); // [B, T-1, V]
    let logp = token_logprobs(logits, batch.targets.clone(), 1.0, vocab_limit);
    let sums = (logp * batch.mask.clone()).sum_dim(1).reshape([b]);
    if !mean {
        return sums;
    }
    let lens: Vec<f32> = batch
        .completion_lens
        .iter()
        .map(|&n| n.max(1) as f32)
        .collect();
    sums / Tensor::from_data(TensorData::new(lens, [b]), &batch.tokens.device())
}

/// Input ids of rollouts: `[BOS] + prompt + response` without the last response token, whose
/// output would predict beyond the response. Every prompt has the same length `k`, every
/// response the same length `n`.
///
/// # Shapes
/// - output: `[N, k + n]`
pub fn rollout_inputs<B: Backend>(
    bos: u32,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let n_rows = prompts.len();
    let width = 1 + prompts.first().map_or(0, Vec::len) + responses.first().map_or(0, Vec::len) - 1;
    let mut ids = Vec::with_capacity(n_rows * width);
    for (p, r) in prompts.iter().zip(responses) {
        ids.push(i64::from(bos));
        ids.extend(p.iter().map(|&x| i64::from(x)));
        ids.extend(r[..r.len() - 1].iter().map(|&x| i64::from(x)));
    }
    Tensor::from_data(TensorData::new(ids, [n_rows, width]), device)
}

/// The responses as a tensor of targets.
///
/// # Shapes
/// - output: `[N, n]`
pub fn response_targets<B: Backend>(
    responses: &[Vec<u32>],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let n = responses.first().map_or(0, Vec::len);
    let ids: Vec<i64> = responses
        .iter()
        .flat_map(|r| r.iter().map(|&x| i64::from(x)))
        .collect();
    Tensor::from_data(TensorData::new(ids, [responses.len(), n]), device)
}

/// The final hidden states at the `n` positions that predict the response tokens: position
/// `k + j` (after `[BOS] + prompt + y_1..y_j`) predicts `y_{j+1}`.
///
/// # Shapes
/// - inputs: `[N, k + n]`
/// - output: `[N, n, C]`
pub fn response_hidden<B: Backend>(
    model: &Gpt<B>,
    inputs: Tensor<B, 2, Int>,
    prompt_len: usize,
    n: usize,
) -> Tensor<B, 3> {
    model.forward_hidden(inputs, None).narrow(1, prompt_len, n)
}

/// Log-probabilities of rollout responses under `model` at `temperature`.
///
/// # Shapes
/// - inputs: `[N, k + n]`, targets: `[N, n]`
/// - output: `[N, n]`
pub fn response_logprobs<B: Backend>(
    model: &Gpt<B>,
    inputs: Tensor<B, 2, Int>,
    targets: Tensor<B, 2, Int>,
    prompt_len: usize,
    temperature: f64,
    vocab_limit: usize,
) -> Tensor<B, 2> {
    let n = targets.dims()[1];
    let hidden = response_hidden(model, inputs, prompt_len, n);
    token_logprobs(model.head(hidden), targets, temperature, vocab_limit)
}
