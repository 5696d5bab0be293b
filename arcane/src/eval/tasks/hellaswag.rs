//! HellaSwag as lm-eval's `hellaswag/utils.py`: the query is
//! `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`, the choices
//! `preprocess(ending)`, where `preprocess` strips, turns ` [title]` into `. `, deletes
//! `[...]` spans (within a line) and turns double spaces into single ones. (Arcane's
//! `eval hellaswag` default scores build-nanogpt's way instead: see `eval::hellaswag`.)

use serde_json::Value;

use super::{check_gold, choices, index_field, text, texts, Doc};

pub(super) fn doc(index: usize, v: &Value) -> Result<Doc, String> {
    let ctx = format!("{} {}", text(v, "ctx_a")?, capitalize(text(v, "ctx_b")?));
    let query = preprocess(&format!("{}: {ctx}", text(v, "activity_label")?));
    let endings: Vec<String> = texts(v, "endings")?.iter().map(|e| preprocess(e)).collect();
    if endings.len() != 4 {
        return Err(format!("{} endings instead of 4", endings.len()));
    }
    let (requests, choice_chars) = choices(&query, &endings);
    Ok(Doc {
        index,
        requests,
        choice_chars,
        gold: check_gold(index_field(v, "label")?, 4)?,
        subject: None,
    })
}

/// Python's `str.capitalize`: the first character upper-cased, the rest lower-cased.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.as_str().to_lowercase().chars())
            .collect(),
        None => String::new(),
    }
}

/// lm-eval's `preprocess`.
fn preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    remove_brackets(&text).replace("  ", " ")
}

/// `re.sub("\\[.*?\\]", "", text)`: each `[` up to the nearest `]` on the same line goes.
fn remove_brackets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']').filter(|&c| !after[..c].contains('\n'));
        match close {
            Some(c) => {
                out.push_str(&rest[..open]);
                rest = &after[c + 1..];
            }
            None => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessing_follows_lm_eval() {
        assert_eq!(
            preprocess(" Baking [title] Mix the flour. [step] Add  water. "),
            "Baking. Mix the flour. Add water."
        );
        assert_eq!(remove_brackets("a [b\nc] d [e] f"), "a [b\nc] d  f");
        assert_eq!(remove_brackets("x [unclosed"), "x [unclosed");
        assert_eq!(capitalize("the MAN is"), "The man is");
    }
}
