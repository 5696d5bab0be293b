//! The tokens that end a reply: the template's end-of-turn token, the tokenizer's end of
//! sequence, and the model's `eos_token_id` (`generation_config.json`, else `config.json`;
//! a number or a list, as Llama 3's `[128001, 128008, 128009]`).

use std::path::Path;

use super::template::{ChatTemplate, RenderOptions};
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
    ids.extend(tokenizer.eos());
    if let Some((_, eos)) = template
        .special_tokens()
        .iter()
        .find(|(n, _)| n == "eos_token")
    {
        ids.extend(tokenizer.token_to_id(eos));
    }
    if let Some(dir) = model_dir {
        ids.extend(model_eos_ids(dir));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `eos_token_id` of `generation_config.json`, else of `config.json` (none if neither says).
pub fn model_eos_ids(dir: &Path) -> Vec<u32> {
    for file in ["generation_config.json", "config.json"] {
        let value: Option<serde_json::Value> = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let Some(eos) = value.as_ref().and_then(|v| v.get("eos_token_id")) else {
            continue;
        };
        let list = match eos {
            serde_json::Value::Array(list) => list.clone(),
            single => vec![single.clone()],
        };
        return list
            .iter()
            .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect();
    }
    Vec::new()
}
