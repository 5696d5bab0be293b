//! Arcane's default chat format for its own (GPT-2 vocabulary) models: ChatML
//! (`<|im_start|>role\ncontent<|im_end|>\n`), whose two tokens live on rows 50257 and 50258 of
//! the vocabulary padded to 50304 ([`crate::tokenizer::CHATML_TOKENS`]).
//!
//! A model has those tokens only once a chat fine-tune asked for them ([`enable_chatml`]
//! records it in `arcane.json` as the tokenizer `gpt2-chatml`); a plain GPT-2 model gets no
//! default template, because it never saw these markers.

use std::path::Path;

use super::template::ChatTemplate;
use crate::checkpoint::{read_manifest, MANIFEST, MODEL_MANIFEST};
use crate::error::{ArcaneError, Result};
use crate::tokenizer::{ModelTokenizer, CHATML_TOKENS};

/// The ChatML template (`chatml.jinja`), as transformers' ChatML-style repositories write it.
pub const CHATML_TEMPLATE: &str = include_str!("chatml.jinja");

/// ChatML's end-of-turn token.
pub const CHATML_END: &str = "<|im_end|>";

/// The default ChatML template, for a tokenizer that has its tokens.
pub fn chatml() -> ChatTemplate {
    ChatTemplate::new(CHATML_TEMPLATE, "Arcane's default ChatML template")
        .with_special_tokens(vec![("eos_token".into(), CHATML_END.into())])
}

/// The template a model uses: its own (see [`ChatTemplate::from_dir`]; seeing the
/// tokenizer's special tokens where no `tokenizer_config.json` names them, as for GPT-2's),
/// else ChatML when its tokenizer has ChatML's tokens; None otherwise.
pub fn model_template(dir: &Path, tokenizer: &ModelTokenizer) -> Result<Option<ChatTemplate>> {
    if let Some(template) = ChatTemplate::from_dir(dir)? {
        if template.special_tokens().is_empty() {
            return Ok(Some(
                template.with_special_tokens(tokenizer.special_tokens()),
            ));
        }
        return Ok(Some(template));
    }
    Ok(tokenizer.has_chatml().then(chatml))
}

/// Gives the Arcane model in `dir` ChatML's two tokens (what a chat fine-tune asks for before
/// it trains on ChatML conversations): its manifest then names the tokenizer `gpt2-chatml`.
/// Needs a vocabulary with room for them (GPT-2's 50257 padded, as every Arcane preset is).
pub fn enable_chatml(dir: &Path) -> Result<ModelTokenizer> {
    let mut manifest = read_manifest(dir)?;
    let tokenizer = ModelTokenizer::builtin(&manifest.tokenizer)
        .ok_or_else(|| {
            ArcaneError::format(
                dir.join(MANIFEST),
                format!(
                    "the tokenizer {:?} is not GPT-2's; Arcane adds ChatML's tokens only to GPT-2's tokenizer",
                    manifest.tokenizer
                ),
            )
        })?
        .with_chatml()?;
    let needed = CHATML_TOKENS
        .iter()
        .map(|&(_, id)| id as usize + 1)
        .max()
        .unwrap_or(0);
    if manifest.config.vocab_size < needed {
        return Err(ArcaneError::format(
            dir.join(MANIFEST),
            format!(
                "the model's vocabulary of {} has no rows for ChatML's tokens (ids {} and {}); \
                 pad it to at least {needed} (Arcane's presets use 50304)",
                manifest.config.vocab_size, CHATML_TOKENS[0].1, CHATML_TOKENS[1].1
            ),
        ));
    }
    manifest.tokenizer = tokenizer.save_into(dir)?;
    MODEL_MANIFEST.write(&dir.join(MANIFEST), &manifest)?;
    Ok(tokenizer)
}
