//! Chat: conversations rendered with a model's chat template exactly as transformers'
//! `apply_chat_template` renders them, encoded without adding special tokens twice, and
//! answered turn after turn on one KV cache.
//!
//! ```no_run
//! use arcane::chat::{ChatTemplate, Conversation, Message, RenderOptions};
//! # fn main() -> arcane::Result<()> {
//! let dir = std::path::Path::new("models/llama");
//! let template = ChatTemplate::from_dir(dir)?.expect("the model has a chat template");
//! let conversation = Conversation::from_messages(&[Message::new("user", "Hello!")]);
//! let options = RenderOptions { add_generation_prompt: true, ..Default::default() };
//! let prompt = template.render(&conversation, &options)?;
//! let ids = arcane::load_tokenizer(dir)?.encode_chat(&prompt)?;
//! # Ok(()) }
//! ```

mod default;
mod environment;
mod messages;
mod pyjson;
mod session;
mod stop;
mod template;

pub use default::{chatml, enable_chatml, model_template, CHATML_END, CHATML_TEMPLATE};
pub use environment::{strip_generation_tags, Clock};
pub use messages::{messages_of, Conversation, Message};
pub use pyjson::{dumps as python_json_dumps, python_float_repr, JsonOptions};
pub use session::{ChatSession, Turn};
pub use stop::{model_eos_ids, stop_ids, END_OF_TURN_TOKENS};
pub use template::{
    ChatTemplate, RenderOptions, DEFAULT_NAME, TEMPLATE_JINJA, TEMPLATE_JSON, TOOL_USE_NAME,
};

/// A value a template sees (messages, tools, kwargs); parse JSON into it with
/// [`parse_json`] to keep object keys in their order.
pub use minijinja::Value as TemplateValue;

/// Parses JSON into a template value, object keys in their order (as Python's `json.loads`).
pub fn parse_json(text: &str) -> crate::Result<TemplateValue> {
    serde_json::from_str(text)
        .map_err(|e| crate::ArcaneError::InvalidInput(format!("not valid JSON: {e}")))
}
