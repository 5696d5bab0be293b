//! A minijinja environment configured like transformers' chat-template environment
//! (`transformers/utils/chat_template_utils.py`, `_cached_compile_jinja_template`):
//!
//! | transformers (Jinja2)                          | here (minijinja 3)                             |
//! |------------------------------------------------|------------------------------------------------|
//! | `trim_blocks=True, lstrip_blocks=True`         | the same [`SyntaxConfig`] switches             |
//! | `jinja2.ext.loopcontrols`                      | cargo feature `loop_controls`                  |
//! | Python `str`/`dict` methods on values          | `minijinja_contrib::pycompat` method callback  |
//! | `tojson` = `json.dumps(ensure_ascii=False)`    | [`super::pyjson::tojson_filter`]               |
//! | `raise_exception(msg)` → `TemplateError`       | an error carrying [`Raised`]                   |
//! | `strftime_now(fmt)` = `datetime.now()`         | the [`Clock`] (local time, or fixed for tests) |
//! | `namespace`, `dict`                            | minijinja built-ins                            |
//!
//! minijinja 3 already prints values as Python does (`True`, `None`, `{'a': 1}`, `[1, 'a']`).
//!
//! `{% generation %}` blocks (transformers' assistant-mask extension) are rewritten to plain
//! `if true` blocks before compiling ([`strip_generation_tags`]): they only mark spans.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind};

use super::pyjson::tojson_filter;

/// The time `strftime_now` formats.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Clock {
    /// The local time now, as transformers' `datetime.now()`.
    #[default]
    System,
    /// A fixed time (tests, reproducible prompts).
    Fixed(jiff::civil::DateTime),
}

impl Clock {
    /// A fixed clock at `iso` (`2026-03-05T14:07:09`).
    pub fn fixed(iso: &str) -> crate::Result<Self> {
        iso.parse().map(Self::Fixed).map_err(|e| {
            crate::ArcaneError::InvalidInput(format!(
                "{iso:?} is not a date and time like 2026-03-05T14:07:09: {e}"
            ))
        })
    }

    /// `strftime(format)` of this clock's time.
    fn strftime(&self, format: &str) -> Result<String, Error> {
        let formatted = match self {
            Self::System => jiff::fmt::strtime::format(format, &jiff::ZonedDateTime::now()),
            Self::Fixed(time) => jiff::fmt::strtime::format(format, *time),
        };
        formatted.map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("strftime_now({format:?}): {e}"),
            )
        })
    }
}

/// The error `raise_exception` raises: found again in the error's sources after rendering,
/// so that the template's own message becomes a typed error.
#[derive(Debug, Clone)]
pub struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// An environment holding `templates` (`(name, source)`), set up like transformers'.
pub fn environment(
    templates: &[(String, String)],
    clock: Clock,
) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson_filter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", move |format: String| {
        clock.strftime(&format)
    });
    for (name, source) in templates {
        env.add_template_owned(name.clone(), strip_generation_tags(source))?;
    }
    Ok(env)
}

/// `raise_exception(message)`: fails the render with the template's message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (with any `-` whitespace control) to
/// `{% if true %}` / `{% endif %}`, keeping the whitespace control: same output, no extension.
pub fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find("{%") {
        let (before, tag) = rest.split_at(open);
        out.push_str(before);
        // The closing `%}` comes after the opening `{%` (in `{%}` they overlap).
        let Some(close) = tag[2..].find("%}").map(|i| i + 2) else {
            rest = tag;
            break;
        };
        let inner = &tag[2..close];
        let (lead, body) = inner.strip_prefix('-').map_or(("", inner), |b| ("-", b));
        let (body, trail) = body.strip_suffix('-').map_or((body, ""), |b| (b, "-"));
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => out.push_str(&format!("{{%{lead} {r} {trail}%}}")),
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            strip_generation_tags("a{%- generation %}b{% endgeneration -%}c{% if x %}"),
            "a{%- if true %}b{% endif -%}c{% if x %}"
        );
        // Jinja reads `{%}{% generation %}` as one (broken) block: left as it is.
        assert_eq!(
            strip_generation_tags("{%}{% generation %}"),
            "{%}{% generation %}"
        );
        assert_eq!(strip_generation_tags("x {%"), "x {%");
    }
}
