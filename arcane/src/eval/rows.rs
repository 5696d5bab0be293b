//! The forward pass every log-likelihood evaluation shares: token rows, right-padded into one
//! `[R, T]` batch, through the transformer; the vocabulary head and the log-softmax only at
//! the positions that predict a scored token (a fraction of all positions: the `[C, V]` head
//! matmul and the softmax over `V` dominate the cost otherwise).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::model::Gpt;
use crate::shapes::FixedShapes;

/// One scored token: the row, the position whose logits predict it, and the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scored {
    /// Row of the batch.
    pub row: usize,
    /// Position (in the row) whose next-token distribution is read.
    pub position: usize,
    /// The token it should predict.
    pub token: u32,
}

/// What the model says about one scored token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TokenScore {
    /// `log p(token | row[..=position])`.
    pub log_prob: f32,
    /// Whether `token` is the most likely next token (the first maximum on ties, as
    /// `torch.argmax`); `false` when not asked for.
    pub greedy: bool,
}

/// Scores `scored` on `rows` in one forward pass of shape `[n_rows, t]` (rows right-padded
/// with token 0; padding rows and positions are never read). With `greedy`, also whether each
/// scored token is the argmax, which costs one more pass over the `[N, V]` log-probs.
///
/// # Shapes
/// - `rows.len() <= n_rows`, every row `<= t` tokens, `t <= max_seq_len`
pub(crate) fn score_positions<B: Backend>(
    model: &Gpt<B>,
    rows: &[&[u32]],
    [n_rows, t]: [usize; 2],
    scored: &[Scored],
    shapes: FixedShapes,
    greedy: bool,
) -> Vec<TokenScore> {
    let device = model.device();
    // Right padding never changes the logits of earlier positions in a causal model.
    let mut ids = vec![0i64; n_rows * t];
    for (k, row) in rows.iter().enumerate() {
        for (j, &id) in row.iter().enumerate() {
            ids[k * t + j] = id as i64;
        }
    }
    let mut positions: Vec<i64> = scored
        .iter()
        .map(|s| (s.row * t + s.position) as i64)
        .collect();
    let mut targets: Vec<i64> = scored.iter().map(|s| s.token as i64).collect();
    // Padding positions (row 0, target 0) only round the head's input to a fixed shape.
    positions.resize(shapes.seq_len(positions.len(), usize::MAX), 0);
    targets.resize(positions.len(), 0);
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n_rows, t]), &device);
    let c = model.config().d_model;
    let hidden = model.forward_hidden(tokens, None).reshape([n_rows * t, c]); // [R·T, C]
    let n = positions.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(positions, [n]), &device);
    let picked_hidden = hidden.select(0, index).reshape([1, n, c]); // [1, N, C]
    let log_probs = log_softmax(model.head(picked_hidden), 2); // [1, N, V]
    let target = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), &device);
    let best = greedy.then(|| to_i64(log_probs.clone().argmax(2).reshape([n]))); // [N]
    let picked = log_probs.gather(2, target.reshape([1, n, 1])); // [1, N, 1]
    let picked: Vec<f32> = picked
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 log-probs");
    scored
        .iter()
        .enumerate()
        .map(|(i, s)| TokenScore {
            log_prob: picked[i],
            greedy: best.as_ref().is_some_and(|b| b[i] == s.token as i64),
        })
        .collect()
}

fn to_i64<B: Backend>(ids: Tensor<B, 1, Int>) -> Vec<i64> {
    ids.into_data()
        .convert::<i64>()
        .to_vec()
        .expect("integer token ids")
}
