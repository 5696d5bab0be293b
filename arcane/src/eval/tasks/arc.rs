//! ARC as lm-eval's `arc_easy.yaml` (and `arc_challenge.yaml`): `Question: {question}\nAnswer:`,
//! choices `choices.text`, gold `choices.label.index(answerKey)`. Labels are letters on most
//! rows and digits (`1`..`4`) on a few; only their position matters.

use serde_json::Value;

use super::{check_gold, choices, text, texts, Doc};

pub(super) fn doc(index: usize, v: &Value) -> Result<Doc, String> {
    let context = format!("Question: {}\nAnswer:", text(v, "question")?);
    let c = v
        .get("choices")
        .ok_or("no object field \"choices\" ({\"text\": [...], \"label\": [...]})")?;
    let options = texts(c, "text")?;
    let labels = texts(c, "label")?;
    if labels.len() != options.len() || options.is_empty() {
        return Err(format!(
            "{} choice texts and {} labels",
            options.len(),
            labels.len()
        ));
    }
    let key = text(v, "answerKey")?;
    let gold = labels
        .iter()
        .position(|l| l == key)
        .ok_or_else(|| format!("answerKey {key:?} is none of the labels {labels:?}"))?;
    let (requests, choice_chars) = choices(&context, &options);
    Ok(Doc {
        index,
        requests,
        choice_chars,
        gold: check_gold(gold, options.len())?,
        subject: None,
    })
}
