//! A model's chat template, found where transformers and TGI look for it, rendered as
//! transformers' `apply_chat_template(..., tokenize=False)` renders it.
//!
//! Where: `chat_template.jinja` (transformers >= 4.50 saves it standalone), else
//! `chat_template.json` (`{"chat_template": ...}`, the processors' file, which TGI also reads
//! for tokenizers; transformers' tokenizers do not), else `tokenizer_config.json`'s
//! `chat_template` (a string, or a list of named templates).

use std::path::Path;

use minijinja::value::Value;

use super::environment::{environment, Clock, Raised};
use super::messages::{ordered_map, Conversation};
use crate::error::{ArcaneError, Result};
use crate::tokenizer::{TemplateField, TokenizerConfig, SPECIAL_TOKEN_NAMES};

/// File name of a standalone template.
pub const TEMPLATE_JINJA: &str = "chat_template.jinja";
/// File name of a template in a JSON object (`{"chat_template": ...}`).
pub const TEMPLATE_JSON: &str = "chat_template.json";
/// The template transformers picks from a named list when no name is asked for.
pub const DEFAULT_NAME: &str = "default";
/// The named template transformers picks when tools are given.
pub const TOOL_USE_NAME: &str = "tool_use";

/// What a render needs besides the conversation.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// End with the header of an assistant turn, so the model writes the reply.
    pub add_generation_prompt: bool,
    /// Tool schemas (`tools`; none when absent, as transformers passes `None`).
    pub tools: Option<Value>,
    /// Documents for retrieval templates (`documents`).
    pub documents: Option<Value>,
    /// Further template variables (`date_string`, `enable_thinking`, ...); they override
    /// the special tokens of the same name.
    pub kwargs: Vec<(String, Value)>,
    /// Which named template (None: `tool_use` when tools are given and it exists, else
    /// `default`).
    pub template_name: Option<String>,
    /// The time `strftime_now` sees.
    pub clock: Clock,
    /// End the text inside the last message (an assistant reply to continue), cut right
    /// after its content, as transformers' `continue_final_message=True`.
    pub continue_final_message: bool,
}

/// What transformers appends to the message it continues, to find where to cut.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// A chat template with the special tokens it sees as variables.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    /// `(name, source)`; one entry named `default` for a single template.
    templates: Vec<(String, String)>,
    /// Where it came from, for messages.
    origin: String,
    /// `bos_token`, `eos_token`, ... as `(name, text)`.
    special_tokens: Vec<(String, String)>,
}

impl ChatTemplate {
    /// One template `source` from `origin` (a file name, for messages).
    pub fn new(source: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            templates: vec![(DEFAULT_NAME.into(), source.into())],
            origin: origin.into(),
            special_tokens: Vec::new(),
        }
    }

    /// The template of a model or tokenizer folder (see the module docs for where it is
    /// looked for), with the special tokens of its `tokenizer_config.json`; None if there is
    /// none.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let config = TokenizerConfig::from_dir(dir)?;
        let jinja = dir.join(TEMPLATE_JINJA);
        let json = dir.join(TEMPLATE_JSON);
        let template = if jinja.is_file() {
            Self::from_file(&jinja)?
        } else if json.is_file() {
            Self::from_file(&json)?
        } else {
            let origin = config
                .path
                .clone()
                .unwrap_or_else(|| dir.join(crate::tokenizer::TOKENIZER_CONFIG_FILE));
            match &config.chat_template {
                Some(field) => Self::from_field(field, &origin),
                None => return Ok(None),
            }
        };
        Ok(Some(template.with_special_tokens(config.special_tokens)))
    }

    /// A template file: Jinja text (`.jinja` or any other name), or a `.json` holding
    /// `{"chat_template": ...}` (a string or named list).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
        if path.extension().is_none_or(|e| e != "json") {
            return Ok(Self::new(text, path.display().to_string()));
        }
        let bad = |what: String| {
            ArcaneError::format(
                path,
                format!("{what}; expected {{\"chat_template\": \"...\"}}"),
            )
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
        // The same field as tokenizer_config.json's, read by the same code.
        match TemplateField::parse(value.get("chat_template")).map_err(bad)? {
            Some(field) => Ok(Self::from_field(&field, path)),
            None => Err(bad("no \"chat_template\" entry".into())),
        }
    }

    fn from_field(field: &TemplateField, origin: &Path) -> Self {
        let origin = origin.display().to_string();
        match field {
            TemplateField::Single(source) => Self::new(source.clone(), origin),
            TemplateField::Named(list) => Self {
                templates: list.clone(),
                origin,
                special_tokens: Vec::new(),
            },
        }
    }

    /// The same template seeing `tokens` (`(name, text)`, e.g. `("bos_token", "<s>")`).
    pub fn with_special_tokens(mut self, tokens: Vec<(String, String)>) -> Self {
        self.special_tokens = tokens;
        self
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The names of its templates (`default` for a single one).
    pub fn names(&self) -> Vec<&str> {
        self.templates.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The source of the template a render with `options` uses.
    pub fn source(&self, options: &RenderOptions) -> Result<&str> {
        let name = self.pick(options)?;
        Ok(self
            .templates
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
            .unwrap_or_default())
    }

    /// The special tokens the template sees.
    pub fn special_tokens(&self) -> &[(String, String)] {
        &self.special_tokens
    }

    /// transformers' `get_chat_template`: the asked-for name, else `tool_use` with tools,
    /// else `default`.
    fn pick(&self, options: &RenderOptions) -> Result<&str> {
        let has = |name: &str| self.templates.iter().any(|(n, _)| n == name);
        let name = match &options.template_name {
            Some(name) => name.as_str(),
            None if options.tools.is_some() && has(TOOL_USE_NAME) => TOOL_USE_NAME,
            None => DEFAULT_NAME,
        };
        if has(name) {
            return Ok(self
                .templates
                .iter()
                .find(|(n, _)| n == name)
                .map(|(n, _)| n.as_str())
                .unwrap_or(DEFAULT_NAME));
        }
        Err(ArcaneError::Template {
            origin: self.origin.clone(),
            message: format!(
                "has no template named {name:?}; it has {}",
                self.names().join(", ")
            ),
        })
    }

    /// Renders `conversation`: the text transformers' `apply_chat_template(conversation,
    /// tokenize=False, ...)` gives. A `raise_exception` in the template is
    /// [`ArcaneError::ChatTemplate`] with its message.
    pub fn render(&self, conversation: &Conversation, options: &RenderOptions) -> Result<String> {
        if conversation.is_empty() {
            return Err(ArcaneError::InvalidInput(
                "the conversation is empty; give at least one message".into(),
            ));
        }
        let name = self.pick(options)?;
        let env = environment(&self.templates, options.clock.clone()).map_err(|e| self.error(e))?;
        let template = env.get_template(name).map_err(|e| self.error(e))?;
        if !options.continue_final_message {
            return template
                .render(self.context(conversation, options))
                .map_err(|e| self.error(e));
        }
        let (tagged, content) = self.tag_final_message(conversation, options)?;
        let rendered = template
            .render(self.context(&tagged, options))
            .map_err(|e| self.error(e))?;
        cut_at_tag(&rendered, &content).ok_or_else(|| {
            ArcaneError::InvalidInput(format!(
                "cannot continue the final message: the chat template {} does not show it as \
                 written (it changes or drops the message)",
                self.origin
            ))
        })
    }

    /// The conversation with [`CONTINUE_TAG`] after the last message's content, and that
    /// content (transformers' checks: no generation prompt, a template that reads `content`).
    fn tag_final_message(
        &self,
        conversation: &Conversation,
        options: &RenderOptions,
    ) -> Result<(Conversation, String)> {
        if options.add_generation_prompt {
            return Err(ArcaneError::InvalidInput(
                "continuing the final message and adding a generation prompt exclude each other"
                    .into(),
            ));
        }
        if !self.source(options)?.contains("content") {
            return Err(ArcaneError::InvalidInput(format!(
                "the chat template {} never reads a message's \"content\", so the final message \
                 cannot be continued",
                self.origin
            )));
        }
        conversation.with_final_suffix(CONTINUE_TAG)
    }

    /// The template's variables: special tokens, then `messages`, `tools`, `documents`,
    /// `add_generation_prompt` and the extra kwargs (which win over special tokens).
    fn context(&self, conversation: &Conversation, options: &RenderOptions) -> Value {
        let mut vars: Vec<(String, Value)> = Vec::new();
        for name in SPECIAL_TOKEN_NAMES {
            if let Some((_, text)) = self.special_tokens.iter().find(|(n, _)| n == name) {
                vars.push((name.to_string(), Value::from(text.clone())));
            }
        }
        let none = || Value::from(());
        vars.push((
            "messages".into(),
            Value::from(conversation.values().to_vec()),
        ));
        vars.push(("tools".into(), options.tools.clone().unwrap_or_else(none)));
        vars.push((
            "documents".into(),
            options.documents.clone().unwrap_or_else(none),
        ));
        vars.push((
            "add_generation_prompt".into(),
            Value::from(options.add_generation_prompt),
        ));
        for (key, value) in &options.kwargs {
            vars.retain(|(k, _)| k != key);
            vars.push((key.clone(), value.clone()));
        }
        ordered_map(vars.into_iter().map(|(k, v)| (Value::from(k), v)))
    }

    /// A minijinja error as Arcane's: the template's own `raise_exception` message, or the
    /// error with its line.
    fn error(&self, error: minijinja::Error) -> ArcaneError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if let Some(Raised(message)) = e.downcast_ref::<Raised>() {
                return ArcaneError::ChatTemplate {
                    message: message.clone(),
                };
            }
            source = e.source();
        }
        let line = error
            .line()
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
        ArcaneError::Template {
            origin: self.origin.clone(),
            message: format!("{}{detail}{line}", error.kind()),
        }
    }
}

/// The rendering cut where the final message's tag starts (transformers'
/// `render_jinja_template`): right before the tag where the template kept it whole, else before
/// it with trailing whitespace removed (a template that trims the content). None: the template
/// does not show the message.
fn cut_at_tag(rendered: &str, content: &str) -> Option<String> {
    let bare = CONTINUE_TAG.trim();
    if !rendered.contains(content.trim()) || !rendered.contains(bare) {
        return None;
    }
    let at = rendered.rfind(bare)?;
    if rendered[at..].starts_with(CONTINUE_TAG) {
        Some(rendered[..at].to_string())
    } else {
        Some(rendered[..at].trim_end().to_string())
    }
}
