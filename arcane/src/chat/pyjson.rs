//! Python's `json.dumps` over template values: the `tojson` filter transformers installs in its
//! chat-template environment (`json.dumps(x, ensure_ascii=False, indent=None,
//! separators=None, sort_keys=False)`).
//!
//! It differs from minijinja's own `tojson` in everything a model sees: `", "` and `": "`
//! separators, keys in insertion order, no HTML escaping of `<>&'`, floats as Python prints
//! them (`1.0`, `1e-07`), and the keyword arguments `ensure_ascii`, `indent`, `separators`
//! and `sort_keys`.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// `json.dumps` options.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonOptions {
    /// Escape every non-ASCII character as `\uXXXX` (transformers' default: false).
    pub ensure_ascii: bool,
    /// Pretty-print with this indentation (`indent=2` is two spaces); None: one line.
    pub indent: Option<String>,
    /// Between items: `", "`, or `","` when indenting (Python's default).
    pub item_separator: String,
    /// Between a key and its value: `": "`.
    pub key_separator: String,
    /// Sort object keys.
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
        }
    }
}

impl JsonOptions {
    /// Options from the filter's keyword arguments, as Python reads them.
    pub fn from_kwargs(kwargs: &Kwargs) -> Result<Self, Error> {
        let mut options = Self {
            ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
            sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
            ..Self::default()
        };
        if let Some(indent) = kwargs.get::<Option<Value>>("indent")? {
            options.indent = match indent.kind() {
                ValueKind::None => None,
                ValueKind::Number => Some(" ".repeat(indent.as_usize().ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "tojson: indent must be >= 0")
                })?)),
                ValueKind::String => Some(indent.as_str().unwrap_or_default().to_string()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be a number or a string",
                    ))
                }
            };
            if options.indent.is_some() {
                options.item_separator = ",".into();
            }
        }
        if let Some(separators) = kwargs.get::<Option<Value>>("separators")? {
            if !separators.is_none() {
                let pair: Vec<String> = separators
                    .try_iter()?
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .filter(|p: &Vec<String>| p.len() == 2)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidOperation,
                            "tojson: separators must be two strings (item, key)",
                        )
                    })?;
                options.item_separator = pair[0].clone();
                options.key_separator = pair[1].clone();
            }
        }
        kwargs.assert_all_used()?;
        Ok(options)
    }
}

/// The `tojson` filter.
pub fn tojson_filter(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let options = JsonOptions::from_kwargs(&kwargs)?;
    Ok(Value::from(dumps(value, &options)?))
}

/// `json.dumps(value, **options)`.
pub fn dumps(value: &Value, options: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, options, 0)?;
    Ok(out)
}

fn write_value(
    out: &mut String,
    value: &Value,
    o: &JsonOptions,
    depth: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(value)),
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), items.len(), o, depth, |out, i| {
                write_value(out, &items[i], o, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = value
                .try_iter()?
                .map(|key| Ok((key_text(&key)?, value.get_item(&key)?)))
                .collect::<Result<_, Error>>()?;
            if o.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, ('{', '}'), entries.len(), o, depth, |out, i| {
                write_string(out, &entries[i].0, o.ensure_ascii);
                out.push_str(&o.key_separator);
                write_value(out, &entries[i].1, o, depth + 1)
            })?;
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: a value of kind {} is not JSON serializable",
                    value.kind()
                ),
            ))
        }
    }
    Ok(())
}

/// `[a, b]` / `{...}`: items separated, and with `indent` one per line.
fn write_container(
    out: &mut String,
    (open, close): (char, char),
    len: usize,
    o: &JsonOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &o.indent {
            out.push('\n');
            out.push_str(&indent.repeat(level));
        }
    };
    for i in 0..len {
        if i > 0 {
            out.push_str(&o.item_separator);
        }
        newline(out, depth + 1);
        item(out, i)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// An object key as Python writes it: strings as they are, numbers and constants as text.
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(number(key)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "tojson: keys must be str, int, float, bool or None, not {}",
                key.kind()
            ),
        )),
    }
}

/// A number as Python's `json` writes it: integers plainly, floats as `float.__repr__`
/// (`1.0`, `2.5`, `1e-07`, `1e+16`), non-finite ones as `NaN` / `Infinity`.
fn number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let x = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    python_float_repr(x)
}

/// `repr(x)` of a finite Python float: the shortest digits that round-trip (as Rust's), in
/// positional notation for 1e-4 <= |x| < 1e16, else scientific with a signed two-digit exponent.
pub fn python_float_repr(x: f64) -> String {
    let abs = x.abs();
    if x == 0.0 || (1e-4..1e16).contains(&abs) {
        let s = format!("{x}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{x:e}"); // "1.5e-7"
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// A JSON string as Python writes it: `"`, `\` and control characters escaped (`\n`, `\u001b`);
/// with `ensure_ascii` also everything outside printable ASCII, as UTF-16 `\uXXXX` units.
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn matches_python_json_dumps() {
        // Expected strings from Python 3: json.dumps(v, ensure_ascii=False) and variants.
        let v =
            parse(r#"{"z": 1, "a": [1.0, 2.5, null, true, 1e-7, 1e16], "ü": "<&>'\"\n\u001b"}"#);
        let o = JsonOptions::default();
        assert_eq!(
            dumps(&v, &o).unwrap(),
            r#"{"z": 1, "a": [1.0, 2.5, null, true, 1e-07, 1e+16], "ü": "<&>'\"\n\u001b"}"#
        );
        let sorted = JsonOptions {
            sort_keys: true,
            ensure_ascii: true,
            ..o.clone()
        };
        assert_eq!(
            dumps(&parse(r#"{"b": "😀é", "a": {}}"#), &sorted).unwrap(),
            r#"{"a": {}, "b": "\ud83d\ude00\u00e9"}"#
        );
        let indented = JsonOptions {
            indent: Some("  ".into()),
            item_separator: ",".into(),
            ..o
        };
        assert_eq!(
            dumps(&parse(r#"{"a": [1, []], "b": {}}"#), &indented).unwrap(),
            "{\n  \"a\": [\n    1,\n    []\n  ],\n  \"b\": {}\n}"
        );
    }
}
