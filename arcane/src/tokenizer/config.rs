//! `tokenizer_config.json`, the file transformers writes beside `tokenizer.json`: the named
//! special tokens (which chat templates see as `bos_token`, `eos_token`, ...), the
//! `add_bos_token` / `add_eos_token` switches of older repositories, and the chat template.
//!
//! Only what Arcane uses is read; every other key is ignored. A token is either a string or an
//! `AddedToken` object (`{"__type": "AddedToken", "content": "<s>", ...}`), as older files
//! store them.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ArcaneError, Result};

/// File name of the tokenizer configuration in a model directory.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The named special tokens transformers passes to chat templates (its
/// `SPECIAL_TOKENS_ATTRIBUTES`), in its order.
pub const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The chat template entry of `tokenizer_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub enum TemplateField {
    /// One template.
    Single(String),
    /// Named templates (`[{"name": "default", "template": ...}, {"name": "tool_use", ...}]`).
    Named(Vec<(String, String)>),
}

/// What Arcane reads from a `tokenizer_config.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerConfig {
    /// The file it was read from (None: no file, all defaults).
    pub path: Option<PathBuf>,
    /// Named special tokens that are set (not null), as `(name, content)` in
    /// [`SPECIAL_TOKEN_NAMES`] order.
    pub special_tokens: Vec<(String, String)>,
    /// `add_bos_token`, where the file has it.
    pub add_bos_token: Option<bool>,
    /// `add_eos_token`, where the file has it.
    pub add_eos_token: Option<bool>,
    /// `chat_template`, where the file has it.
    pub chat_template: Option<TemplateField>,
}

impl TokenizerConfig {
    /// Reads `dir/tokenizer_config.json`; a folder without one gives the defaults (no special
    /// tokens named, no switches, no template).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(TOKENIZER_CONFIG_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        Self::from_file(&path)
    }

    /// Reads one `tokenizer_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            ArcaneError::format(
                path,
                format!(
                    "not valid JSON ({e}); use the tokenizer_config.json that came with the model"
                ),
            )
        })?;
        let bad = |message: String| ArcaneError::format(path, message);
        let Some(object) = value.as_object() else {
            return Err(bad("expected a JSON object".into()));
        };
        let mut special_tokens = Vec::new();
        for name in SPECIAL_TOKEN_NAMES {
            if let Some(content) = token_content(object.get(name))
                .map_err(|found| bad(format!("`{name}` must be a string or an object with a \"content\" string, found {found}")))?
            {
                special_tokens.push((name.to_string(), content));
            }
        }
        let switch = |key: &str| match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(bad(format!("`{key}` must be true or false, found {other}"))),
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            special_tokens,
            add_bos_token: switch("add_bos_token")?,
            add_eos_token: switch("add_eos_token")?,
            chat_template: TemplateField::parse(object.get("chat_template")).map_err(bad)?,
        })
    }

    /// The content of special token `name` (`"bos_token"`, ...), if the file sets it.
    pub fn token(&self, name: &str) -> Option<&str> {
        self.special_tokens
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, content)| content.as_str())
    }
}

/// A special token's text: a string, or an `AddedToken` object's `content`. `Err` carries what
/// was found instead.
fn token_content(value: Option<&Value>) -> std::result::Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(Value::Object(o.clone()).to_string()),
        },
        Some(other) => Err(other.to_string()),
    }
}

impl TemplateField {
    /// A `chat_template` entry (of `tokenizer_config.json` or `chat_template.json`): a string,
    /// or a list of `{name, template}` objects. `Err` says what is wrong.
    pub fn parse(value: Option<&Value>) -> std::result::Result<Option<Self>, String> {
        template_field(value)
    }
}

/// See [`TemplateField::parse`].
fn template_field(value: Option<&Value>) -> std::result::Result<Option<TemplateField>, String> {
    let list = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => return Ok(Some(TemplateField::Single(s.clone()))),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!(
                "`chat_template` must be a string or a list of {{\"name\", \"template\"}} objects, found {}",
                kind(other)
            ))
        }
    };
    let mut named = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let field = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
        match (field("name"), field("template")) {
            (Some(name), Some(template)) => named.push((name, template)),
            _ => {
                return Err(format!(
                    "`chat_template` entry {i} must be an object with \"name\" and \"template\" strings"
                ))
            }
        }
    }
    Ok(Some(TemplateField::Named(named)))
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TokenizerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKENIZER_CONFIG_FILE);
        std::fs::write(&path, text).unwrap();
        TokenizerConfig::from_file(&path)
    }

    #[test]
    fn tokens_are_strings_or_added_token_objects() {
        let c = parse(
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
                "eos_token": "</s>", "pad_token": null, "add_bos_token": true,
                "chat_template": [{"name": "default", "template": "A"}, {"name": "rag", "template": "B"}]}"#,
        )
        .unwrap();
        assert_eq!(c.token("bos_token"), Some("<s>"));
        assert_eq!(c.token("eos_token"), Some("</s>"));
        assert_eq!(c.token("pad_token"), None);
        assert_eq!(c.add_bos_token, Some(true));
        assert_eq!(c.add_eos_token, None);
        assert_eq!(
            c.chat_template,
            Some(TemplateField::Named(vec![
                ("default".into(), "A".into()),
                ("rag".into(), "B".into())
            ]))
        );
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        let err = parse(r#"{"eos_token": 5}"#).unwrap_err().to_string();
        assert!(err.contains("`eos_token` must be a string"), "{err}");
        let err = parse(r#"{"chat_template": [{"name": "default"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 0"), "{err}");
        let err = parse(r#"{"add_bos_token": "yes"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("true or false"), "{err}");
    }
}
