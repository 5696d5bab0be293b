//! The tokens that end a reply: the template's end-of-turn token, the tokenizer's end of
//! sequence, and the model's `eos_token_id` (`generation_config.json`, else `config.json`;
//! a number or a list, as Llama 3's `[128001, 128008, 128009]`).

use std::path::Path;

use super::template::{ChatTemplate, RenderOptions};
pub use crate::generation::{eos_ids, model_eos_ids};
use crate::tokenizer::ModelTokenizer;

/// End-of-turn tokens of the common template families, looked for in the template's text.
pub const END_OF_TURN_TOKENS: [&str; 9] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<eos>",
];

/// The ids that stop generation for a chat with `template` (sorted, no duplicates): each
/// end-of-turn token the template writes that is one token of the vocabulary, the tokenizer's
/// end of sequence (a template writing `eos_token`), and the model folder's `eos_token_id`s.
pub fn stop_ids(
    template: &ChatTemplate,
    tokenizer: &ModelTokenizer,
    model_dir: Option<&Path>,
) -> Vec<u32> {
    let source = template
        .source(&RenderOptions::default())
        .unwrap_or_default();
    let mut ids: Vec<u32> = END_OF_TURN_TOKENS
        .iter()
        .filter(|token| source.contains(*token))
        .filter_map(|token| tokenizer.token_to_id(token))
        .collect();
    ids.extend(eos_ids(tokenizer, model_dir));
    if let Some((_, eos)) = template
        .special_tokens()
        .iter()
        .find(|(n, _)| n == "eos_token")
    {
        ids.extend(tokenizer.token_to_id(eos));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}
