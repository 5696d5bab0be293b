//! Evaluation: next-token loss over a token stream, HellaSwag (build-nanogpt's scoring), and
//! the lm-evaluation-harness tasks over one log-likelihood engine.

mod hellaswag;
mod loglik;
mod loss;
pub mod metrics;
mod rows;
pub mod tasks;

pub use hellaswag::{
    load_hellaswag, parse_hellaswag, score_hellaswag, score_hellaswag_with, BadLine,
    HellaswagExample, HellaswagPrediction, HellaswagScore,
};
pub use loglik::{adds_bos, encode_pair, score_requests, Loglik, Request};
pub use loss::{token_loss, windows, LossReport};
