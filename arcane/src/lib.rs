//! # Arcane
//!
//! GPT-2-class language models on [Burn](https://burn.dev): a backend-generic model (exact GPT-2
//! and a RoPE/RMSNorm/SwiGLU family), Hugging Face checkpoint import and export (also by Hub
//! id, `ORG/NAME[@REVISION]`, through the shared Hugging Face cache: [`hub`]), KV-cache
//! generation with temperature, top-k and nucleus sampling, pre-training with burn-train
//! ([`training`]), LoRA fine-tuning ([`lora`]), evaluation (loss, HellaSwag: [`eval`]) and chat
//! (chat templates rendered as transformers renders them, multi-turn on one KV cache: [`chat`]).
//!
//! Everything here is generic over `B: Backend`; pick a backend at the edge:
//!
//! ```no_run
//! use arcane::model::ModelConfig;
//! use burn::backend::Flex;
//!
//! let device = Default::default();
//! let model = ModelConfig::tiny().init::<Flex>(&device).unwrap();
//! let tokens = burn::tensor::Tensor::<Flex, 2, burn::tensor::Int>::zeros([1, 8], &device);
//! let logits = model.forward(tokens); // [1, 8, 256]
//! ```

#[cfg(feature = "train")]
pub mod align;
pub mod chat;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod eval;
pub mod generation;
pub mod hub;
pub mod io;
pub mod jsonl;
pub mod kernels;
pub mod lora;
pub mod model;
pub mod pretrained;
pub mod sft;
pub mod shapes;
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod training;
pub mod weights;

pub use checkpoint::{load_model, load_tokenizer, save_model};
pub use error::{ArcaneError, Result};
pub use model::{Gpt, ModelConfig};
pub use tokenizer::{ModelTokenizer, Tokenizer};
