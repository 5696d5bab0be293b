//! Evaluation: next-token loss over a token stream, and HellaSwag.

mod hellaswag;
mod loss;

pub use hellaswag::{
    load_hellaswag, parse_hellaswag, score_hellaswag, score_hellaswag_with, BadLine,
    HellaswagExample, HellaswagPrediction, HellaswagScore,
};
pub use loss::{token_loss, windows, LossReport};
