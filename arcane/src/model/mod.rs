//! The transformer: pure architecture, no training or sampling logic.
//!
//! Shape letters used in every `# Shapes` doc and shape comment (as in llm.c):
//!
//! | letter | meaning |
//! |---|---|
//! | `B` | batch size |
//! | `T` | sequence length of the current input (new tokens only when decoding with a cache) |
//! | `S` | keys/values seen so far, cache included (`S = past + T`) |
//! | `C` | model width, `d_model` |
//! | `H` | query heads; `Hkv` key/value heads |
//! | `D` | head width, `C / H` |
//! | `F` | MLP hidden width |
//! | `V` | vocabulary size |

mod adapter;
mod attention;
mod bf16_weights;
mod block;
mod config;
mod gpt;
mod init;
mod kv_cache;
mod linear;
mod mlp;
mod norm;
mod packed;
mod precision;
mod rope;

pub use adapter::{LoraConfig, LoraTarget};
pub use attention::CausalSelfAttention;
pub use block::Block;
pub use config::{
    HfTokenIds, MlpKind, ModelConfig, NormKind, PositionEncoding, RopeScaling, PRESETS,
};
pub use gpt::Gpt;
pub use kv_cache::{CacheMask, CachedForward, KvCache, LayerCache, DEFAULT_BUCKET};
pub use linear::{Linear, LoraAdapter};
pub use mlp::Mlp;
pub use norm::Norm;
pub use packed::Packing;
pub use precision::Precision;
pub use rope::Rope;
