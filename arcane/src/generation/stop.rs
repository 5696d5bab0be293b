//! The tokens that end a generation: the tokenizer's end of sequence and the model's
//! `eos_token_id` (`generation_config.json`, else `config.json`; a number or a list, as Llama
//! 3's `[128001, 128008, 128009]`). Generation stops at any of them (transformers'
//! `generate` does the same with a list).

use std::path::Path;

use crate::pretrained::hf_eos_ids;
use crate::tokenizer::ModelTokenizer;

/// The ids that end a generation for a model with `tokenizer` in `model_dir` (sorted, no
/// duplicates): the tokenizer's end of sequence and the folder's `eos_token_id`s.
pub fn eos_ids(tokenizer: &ModelTokenizer, model_dir: Option<&Path>) -> Vec<u32> {
    let mut ids: Vec<u32> = tokenizer.eos().into_iter().collect();
    if let Some(dir) = model_dir {
        ids.extend(model_eos_ids(dir));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `eos_token_id` of `generation_config.json`, else of `config.json` (none if neither says).
pub fn model_eos_ids(dir: &Path) -> Vec<u32> {
    ["generation_config.json", "config.json"]
        .iter()
        .map(|file| hf_eos_ids(&dir.join(file)))
        .find(|ids| !ids.is_empty())
        .unwrap_or_default()
}
