//! Supervised fine-tuning data: TRL's four dataset formats ([`data`]) turned into token ids
//! with a loss mask ([`encode`]): completion tokens for prompt/completion rows, assistant turns
//! for conversations (spans derived from the chat template by prefix difference), EOS appended
//! as TRL does. Training is the ordinary loop with a masked loss (`training::sft_batch`).

mod data;
mod encode;

pub use data::{read_sft_rows, SftFormat, SftRow, SftRows};
pub use encode::{EncodeStats, SftEncoder, SftExample};
