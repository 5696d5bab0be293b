//! Conversations: a list of messages, each a JSON object with a `role` and usually a
//! `content` (`[{"role": "user", "content": "Hi"}]`), as OpenAI-style APIs and transformers
//! take them. Keys beyond those two (`tool_calls`, `name`, ...) are kept, in their order, for
//! templates that read them.

use std::path::Path;

use minijinja::value::{Value, ValueKind};

use crate::error::{ArcaneError, Result};

/// One message of plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A conversation, as the template's `messages` sees it.
#[derive(Clone, Debug, Default)]
pub struct Conversation {
    messages: Vec<Value>,
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// A conversation of plain messages.
    pub fn from_messages(messages: &[Message]) -> Self {
        let mut conversation = Self::new();
        for m in messages {
            conversation.push(m.clone());
        }
        conversation
    }

    /// Parses a JSON list of message objects (keys kept in their order).
    pub fn from_json(text: &str) -> Result<Self> {
        Self::parse(text).map_err(ArcaneError::InvalidInput)
    }

    /// Reads a JSON file holding a list of message objects.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ArcaneError::io(path, e))?;
        Self::parse(&text).map_err(|message| ArcaneError::format(path, message))
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        const SHAPE: &str =
            r#"expected a JSON list of messages like [{"role": "user", "content": "Hello"}]"#;
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e}); {SHAPE}"))?;
        if value.kind() != ValueKind::Seq {
            return Err(format!("found {} instead; {SHAPE}", value.kind()));
        }
        let mut messages = Vec::new();
        for (i, message) in value.try_iter().map_err(|e| e.to_string())?.enumerate() {
            messages.push(check_message(i, message).map_err(|e| format!("{e}; {SHAPE}"))?);
        }
        Ok(Self { messages })
    }

    /// Appends a plain message.
    pub fn push(&mut self, message: Message) {
        self.messages.push(ordered_map([
            (Value::from("role"), Value::from(message.role)),
            (Value::from("content"), Value::from(message.content)),
        ]));
    }

    /// Appends the messages of `other`.
    pub fn extend(&mut self, other: &Conversation) {
        self.messages.extend(other.messages.iter().cloned());
    }

    /// A copy whose last message's `content` (a string) ends with `suffix`, and that content
    /// as it was.
    pub fn with_final_suffix(&self, suffix: &str) -> Result<(Self, String)> {
        let last = self.messages.last().ok_or_else(|| {
            ArcaneError::InvalidInput("the conversation is empty; give at least one message".into())
        })?;
        let content = last
            .get_attr("content")
            .ok()
            .and_then(|c| c.as_str().map(str::to_string));
        let Some(content) = content else {
            return Err(ArcaneError::InvalidInput(
                "the final message has no \"content\" text to continue".into(),
            ));
        };
        let mut entries = Vec::new();
        for key in last
            .try_iter()
            .map_err(|e| ArcaneError::InvalidInput(e.to_string()))?
        {
            let value = match key.as_str() {
                Some("content") => Value::from(format!("{content}{suffix}")),
                _ => last.get_item(&key).unwrap_or_default(),
            };
            entries.push((key, value));
        }
        let mut copy = self.clone();
        if let Some(slot) = copy.messages.last_mut() {
            *slot = ordered_map(entries);
        }
        Ok((copy, content))
    }

    /// Drops the last message (a reply that could not be generated).
    pub fn pop(&mut self) {
        self.messages.pop();
    }

    /// The messages as template values.
    pub fn values(&self) -> &[Value] {
        &self.messages
    }

    /// The number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there is no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The role of message `i`.
    pub fn role(&self, i: usize) -> Option<String> {
        let role = self.messages.get(i)?.get_attr("role").ok()?;
        role.as_str().map(str::to_string)
    }

    /// Keeps only the messages for which `keep(i, role)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &str) -> bool) {
        let roles: Vec<String> = (0..self.len())
            .map(|i| self.role(i).unwrap_or_default())
            .collect();
        let mut i = 0;
        self.messages.retain(|_| {
            let k = keep(i, &roles[i]);
            i += 1;
            k
        });
    }
}

/// Message `i` checked (an object with a string `role`), with null-valued keys dropped as
/// transformers does (many templates test whether a key exists, not whether it is null).
fn check_message(i: usize, message: Value) -> std::result::Result<Value, String> {
    if message.kind() != ValueKind::Map {
        return Err(format!("message {i} is {}, not an object", message.kind()));
    }
    let role = message.get_attr("role").map_err(|e| e.to_string())?;
    if role.as_str().is_none() {
        return Err(format!("message {i} has no \"role\" string"));
    }
    let mut kept = Vec::new();
    for key in message.try_iter().map_err(|e| e.to_string())? {
        let value = message.get_item(&key).map_err(|e| e.to_string())?;
        if !value.is_none() {
            kept.push((key, value));
        }
    }
    Ok(ordered_map(kept))
}

/// A template map with its keys in the order given (as a Python dict).
pub fn ordered_map(entries: impl IntoIterator<Item = (Value, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .collect::<indexmap::IndexMap<Value, Value>>(),
    )
}

/// The messages of a JSON list of `{"role", "content"}` objects with string values (the
/// field `key` of a data row, named in the error).
pub fn messages_of(
    value: &serde_json::Value,
    key: &str,
) -> std::result::Result<Vec<Message>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!(r#""{key}" must be a list of {{"role", "content"}} objects"#))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |name: &str| {
                m.get(name).and_then(serde_json::Value::as_str).ok_or_else(|| {
                    format!(r#""{key}"[{i}] needs a string "{name}" (messages are {{"role", "content"}})"#)
                })
            };
            Ok(Message::new(field("role")?, field("content")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_say_what_a_conversation_looks_like() {
        for (text, says) in [
            ("{\"role\": \"user\"}", "instead"),
            ("[{\"content\": \"hi\"}]", "message 0 has no \"role\""),
            ("[1]", "message 0 is number"),
            ("[{", "not valid JSON"),
        ] {
            let err = Conversation::from_json(text).unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains("[{\"role\""),
                "{text}: {err}"
            );
        }
        let ok = Conversation::from_json(r#"[{"role": "user", "content": "hi", "name": null}]"#)
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert!(ok.values()[0].get_attr("name").unwrap().is_undefined());
    }
}
