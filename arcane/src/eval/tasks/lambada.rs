//! LAMBADA as lm-eval's `lambada_openai.yaml`: the context is every word but the last,
//! `' '.join(text.split(' ')[:-1])`, the continuation `' ' + text.split(' ')[-1]`.

use serde_json::Value;

use super::{text, Doc};

pub(super) fn doc(index: usize, v: &Value) -> Result<Doc, String> {
    let passage = text(v, "text")?;
    let (context, last) = passage
        .rsplit_once(' ')
        .ok_or("the text has no space before its last word")?;
    if context.is_empty() {
        return Err("the text has no words before its last one".into());
    }
    Ok(Doc {
        index,
        requests: vec![(context.to_string(), format!(" {last}"))],
        choice_chars: vec![last.chars().count()],
        gold: 0,
        subject: None,
    })
}
