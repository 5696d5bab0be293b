//! Mean next-token cross-entropy (nats per token) and perplexity over a token stream.
//!
//! The stream is cut into windows of at most `W` tokens, each starting with the last token of
//! the previous one, so every token after the first is predicted exactly once, with up to
//! `W - 1` tokens of context (non-overlapping evaluation, as in the GPT-2 paper's tables; a
//! sliding window would give each token more context and a lower number).

use std::ops::Range;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::error::{ArcaneError, Result};
use crate::model::Gpt;
use crate::shapes::FixedShapes;

/// The result of [`token_loss`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LossReport {
    /// Mean cross-entropy in nats per predicted token.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Number of predicted tokens (the stream's length minus one).
    pub tokens: usize,
}

/// The windows over a stream of `n` tokens: index ranges of at most `window` tokens, each
/// starting at the last token of the previous one.
pub fn windows(n: usize, window: usize) -> Vec<Range<usize>> {
    assert!(window >= 2, "a window needs at least two tokens");
    let mut out = Vec::new();
    let mut start = 0;
    while start + 1 < n {
        let end = (start + window).min(n);
        out.push(start..end);
        start = end - 1;
    }
    out
}

/// Evaluates the model's loss on `ids` with windows of `window` tokens, `batch_size` windows
/// per forward, with batch shapes rounded by `shapes` (padding is masked out of the sum).
/// `progress(done, total)` is called after each batch with predicted-token counts.
pub fn token_loss<B: Backend>(
    model: &Gpt<B>,
    ids: &[u32],
    window: usize,
    batch_size: usize,
    shapes: FixedShapes,
    mut progress: impl FnMut(usize, usize),
) -> Result<LossReport> {
    let max_seq_len = model.config().max_seq_len;
    if ids.len() < 2 {
        return Err(ArcaneError::InvalidInput(format!(
            "need at least 2 tokens to measure a next-token loss, got {}",
            ids.len()
        )));
    }
    if window < 2 || window > max_seq_len + 1 {
        return Err(ArcaneError::InvalidInput(format!(
            "the window must be between 2 and the context + 1 ({}), got {window}",
            max_seq_len + 1
        )));
    }
    model.check_tokens(ids)?;
    let all = windows(ids.len(), window);
    let total = ids.len() - 1;
    let (mut sum, mut done) = (0.0f64, 0usize);
    // Windows of equal length share a batch (all but the last have length `window`).
    for group in all.chunk_by(|a, b| a.len() == b.len()) {
        for batch in group.chunks(batch_size.max(1)) {
            let t = batch[0].len() - 1;
            let shape = [
                shapes.rows(batch.len(), batch_size.max(1)),
                shapes.seq_len(t, max_seq_len),
            ];
            sum += batch_nll(model, ids, batch, t, shape);
            done += batch.len() * t;
            progress(done, total);
        }
    }
    let loss = sum / total as f64;
    Ok(LossReport {
        loss,
        perplexity: loss.exp(),
        tokens: total,
    })
}

/// Summed negative log-likelihood of the `t` predicted tokens of each window in `batch`, run
/// as a `[rows, T']` batch (`rows >= batch.len()`, `T' >= t`) whose padding is masked out.
fn batch_nll<B: Backend>(
    model: &Gpt<B>,
    ids: &[u32],
    batch: &[Range<usize>],
    t: usize,
    [rows, t_pad]: [usize; 2],
) -> f64 {
    let device = model.device();
    let mut inputs = vec![0i64; rows * t_pad];
    let mut targets = vec![0i64; rows * t_pad];
    let mut weights = vec![0f32; rows * t_pad];
    for (r, window) in batch.iter().enumerate() {
        for p in 0..t {
            inputs[r * t_pad + p] = ids[window.start + p] as i64;
            targets[r * t_pad + p] = ids[window.start + p + 1] as i64;
            weights[r * t_pad + p] = 1.0;
        }
    }
    let shape = [rows, t_pad];
    let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, shape), &device);
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, shape), &device);
    let log_probs = log_softmax(model.forward(inputs), 2); // [B, T', V]
    let picked = log_probs.gather(2, targets.unsqueeze_dim::<3>(2)); // [B, T', 1]
    let picked = if rows * t_pad == batch.len() * t {
        picked
    } else {
        let weights = Tensor::<B, 2>::from_data(TensorData::new(weights, shape), &device);
        picked * weights.unsqueeze_dim::<3>(2)
    };
    -(picked.sum().into_scalar().elem::<f64>())
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_predict_every_token_once() {
        assert_eq!(windows(10, 4), vec![0..4, 3..7, 6..10]);
        assert_eq!(windows(11, 4), vec![0..4, 3..7, 6..10, 9..11]);
        assert_eq!(windows(2, 4), vec![0..2]);
        for n in 2..40 {
            let predicted: usize = windows(n, 5).iter().map(|r| r.len() - 1).sum();
            assert_eq!(predicted, n - 1);
        }
    }
}
