//! The chat format a reward model was trained in, kept beside it (`reward_chat.json`: the
//! template's text and the special tokens it saw), so that `reward eval` renders
//! conversational pairs as training did, and PPO, RLOO and `eval reward` refuse a reward model
//! that would read the policy's prompts in another format than it learnt: a plain-text reward
//! model under chat prompts, a chat one under plain prompts, or another template.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chat_data::ChatFormat;
use crate::chat::ChatTemplate;
use crate::error::{ArcaneError, Result};
use crate::tokenizer::ModelTokenizer;

/// File of a reward model directory trained on conversations.
pub const REWARD_CHAT: &str = "reward_chat.json";

/// `reward_chat.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RewardChat {
    /// The chat template's text.
    template: String,
    /// Where it came from, for messages.
    origin: String,
    /// The special tokens it saw (`eos_token`, ...), as `(name, text)`.
    special_tokens: Vec<(String, String)>,
}

/// Records (or, for plain-text training, removes) the chat format of the reward model in
/// `dir`.
pub fn save_reward_chat(dir: &Path, chat: Option<&ChatFormat>) -> Result<()> {
    let path = dir.join(REWARD_CHAT);
    let Some(chat) = chat else {
        if path.is_file() {
            std::fs::remove_file(&path).map_err(|e| ArcaneError::io(&path, e))?;
        }
        return Ok(());
    };
    let record = RewardChat {
        template: chat.template_source()?.to_string(),
        origin: chat.template().origin().to_string(),
        special_tokens: chat.template().special_tokens().to_vec(),
    };
    let text = serde_json::to_string_pretty(&record)
        .map_err(|e| ArcaneError::format(&path, format!("cannot serialize: {e}")))?;
    crate::io::write_atomic(&path, text.as_bytes())
}

/// The chat format the reward model in `dir` was trained in, read with its `tokenizer`;
/// None for a reward model of plain-text pairs.
pub fn load_reward_chat(dir: &Path, tokenizer: &ModelTokenizer) -> Result<Option<ChatFormat>> {
    let path = dir.join(REWARD_CHAT);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ArcaneError::io(&path, e))?;
    let record: RewardChat = serde_json::from_str(&text).map_err(|e| {
        ArcaneError::format(
            &path,
            format!("not a reward model's chat record ({e}); train the reward model again"),
        )
    })?;
    let template = ChatTemplate::new(record.template, record.origin)
        .with_special_tokens(record.special_tokens);
    Ok(Some(ChatFormat::new(
        tokenizer.clone(),
        template,
        Some(dir),
    )))
}

/// Refuses the reward model in `dir` if it was trained in another format than the policy's
/// prompts are in (`policy`: the chat format of chat prompts, None for plain text).
pub fn check_reward_chat(
    dir: &Path,
    tokenizer: &ModelTokenizer,
    policy: Option<&ChatFormat>,
) -> Result<()> {
    let reward = load_reward_chat(dir, tokenizer)?;
    let fail = |m: &str| Err(ArcaneError::InvalidInput(m.to_string()));
    match (reward, policy) {
        (None, None) => Ok(()),
        (None, Some(_)) => fail(
            "the reward model was trained on plain-text pairs, but the prompts are conversations \
             rendered with a chat template, which it never read; train it on conversational pairs \
             (`reward train` on a model with the policy's template), or give plain-text prompts",
        ),
        (Some(_), None) => fail(
            "the reward model was trained on conversations, but the prompts are plain text; give \
             conversational prompts {\"prompt\": [messages]}, or a reward model of plain-text pairs",
        ),
        (Some(r), Some(p)) if r.template_source()? != p.template_source()? => fail(&format!(
            "the reward model was trained on conversations rendered with the chat template {} but \
             the policy renders them with {}, another text; train the reward model on a model with \
             the policy's template",
            r.template().origin(),
            p.template().origin()
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}
