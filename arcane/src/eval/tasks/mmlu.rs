//! MMLU as lm-eval's `mmlu/default` zero-shot: the description `The following are multiple
//! choice questions (with answers) about {subject with "_" as " "}.\n\n`, then
//! `{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:`, continuations ` A`..` D`,
//! gold `answer` (0..3, or a letter).

use serde_json::Value;

use super::{check_gold, choices, text, texts, Doc};

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

pub(super) fn doc(index: usize, v: &Value) -> Result<Doc, String> {
    let subject = text(v, "subject")?;
    let options = texts(v, "choices")?;
    if options.len() != 4 {
        return Err(format!("{} choices instead of 4", options.len()));
    }
    let mut context = format!(
        "The following are multiple choice questions (with answers) about {}.\n\n{}\n",
        subject.replace('_', " "),
        text(v, "question")?.trim()
    );
    for (letter, option) in LETTERS.iter().zip(&options) {
        context.push_str(&format!("{letter}. {option}\n"));
    }
    context.push_str("Answer:");
    let answer = v.get("answer").ok_or("no field \"answer\"")?;
    let gold = match (answer.as_u64(), answer.as_str()) {
        (Some(n), _) => n as usize,
        (None, Some(letter)) => LETTERS
            .iter()
            .position(|l| *l == letter.trim())
            .ok_or_else(|| format!("answer {letter:?} is none of A, B, C, D"))?,
        _ => return Err("\"answer\" is neither 0..3 nor a letter".into()),
    };
    let letters: Vec<String> = LETTERS.iter().map(|l| l.to_string()).collect();
    let (requests, choice_chars) = choices(&context, &letters);
    Ok(Doc {
        index,
        requests,
        choice_chars,
        gold: check_gold(gold, 4)?,
        subject: Some(subject.to_string()),
    })
}
