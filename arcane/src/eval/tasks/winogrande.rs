//! WinoGrande as lm-eval's `winogrande/preprocess_winogrande.py` ("partial" scoring): each
//! option fills the blank and ends the context, `sentence[:idx] + option`; the continuation
//! is fixed, `" " + sentence[idx + 1:].strip()`; gold is `answer` `"1"` or `"2"`.

use serde_json::Value;

use super::{text, Doc};

pub(super) fn doc(index: usize, v: &Value) -> Result<Doc, String> {
    let sentence = text(v, "sentence")?;
    let blank = sentence
        .find('_')
        .ok_or("the sentence has no blank \"_\"")?;
    let options = [text(v, "option1")?, text(v, "option2")?];
    let continuation = format!(" {}", sentence[blank + 1..].trim());
    let contexts: Vec<String> = options
        .iter()
        .map(|o| format!("{}{o}", &sentence[..blank]))
        .collect();
    let gold = match text(v, "answer")? {
        "1" => 0,
        "2" => 1,
        other => return Err(format!("answer {other:?} is neither \"1\" nor \"2\"")),
    };
    Ok(Doc {
        index,
        choice_chars: contexts.iter().map(|c| c.chars().count()).collect(),
        requests: contexts
            .into_iter()
            .map(|c| (c, continuation.clone()))
            .collect(),
        gold,
        subject: None,
    })
}
