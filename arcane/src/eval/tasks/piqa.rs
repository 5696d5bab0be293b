//! PIQA as lm-eval's `piqa.yaml`: `Question: {goal}\nAnswer:`, choices `sol1`, `sol2`, gold
//! `label`.

use serde_json::Value;

use super::{check_gold, choices, index_field, text, Doc};

pub(super) fn doc(index: usize, v: &Value) -> Result<Doc, String> {
    let context = format!("Question: {}\nAnswer:", text(v, "goal")?);
    let sols = [text(v, "sol1")?.to_string(), text(v, "sol2")?.to_string()];
    let (requests, choice_chars) = choices(&context, &sols);
    Ok(Doc {
        index,
        requests,
        choice_chars,
        gold: check_gold(index_field(v, "label")?, 2)?,
        subject: None,
    })
}
