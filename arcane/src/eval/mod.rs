//! Evaluation: next-token loss over a token stream.

mod loss;

pub use loss::{token_loss, windows, LossReport};
