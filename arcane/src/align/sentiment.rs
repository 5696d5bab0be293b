//! The bundled sentiment data (`arcane/data/sentiment/`, see its README for sources and
//! licences): 3,000 labelled review sentences (UCI Sentiment Labelled Sentences, CC BY 4.0)
//! and the VADER lexicon (MIT), and the files derived from them.
//!
//! The split is deterministic: every (source, label) group of 500 sentences is shuffled with
//! a fixed seed (SplitMix64 + Fisher-Yates, stable across crate versions) and its first 20%
//! held out. From each half come TRL-format preference pairs (a positive sentence chosen over
//! a negative one of the same source, empty prompt) and prompts (a sentence's first words).

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::data::{write_jsonl, PreferencePair, PromptRecord};
use crate::error::{ArcaneError, Result};

/// The sentences, gzip-compressed JSON lines `{"text", "label", "source"}`.
pub const SENTENCES_GZ: &[u8] = include_bytes!("../../data/sentiment/uci_sentences.jsonl.gz");

/// Seed of the bundled split.
pub const SPLIT_SEED: u64 = 2015;
/// Fraction of every group held out.
pub const TEST_FRACTION: f64 = 0.2;
/// Words of a sentence that form a prompt.
pub const PROMPT_WORDS: usize = 4;

/// The derived files `write_derived` writes, in order.
pub const DERIVED_FILES: [&str; 5] = [
    "pairs_train.jsonl",
    "pairs_test.jsonl",
    "prompts_train.jsonl",
    "prompts_test.jsonl",
    "reviews_train.jsonl",
];

/// One labelled sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentence {
    /// The sentence.
    pub text: String,
    /// 1 positive, 0 negative.
    pub label: u8,
    /// `imdb`, `amazon` or `yelp`.
    pub source: String,
}

/// Training and held-out sentences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// 80%.
    pub train: Vec<Sentence>,
    /// 20%.
    pub test: Vec<Sentence>,
}

/// The bundled sentences.
pub fn bundled_sentences() -> Result<Vec<Sentence>> {
    let reader = BufReader::new(flate2::read::GzDecoder::new(SENTENCES_GZ));
    parse_sentences(reader, Path::new("uci_sentences.jsonl.gz"))
}

/// Reads sentences as JSON lines; `source` names the input in errors.
pub fn parse_sentences(reader: impl BufRead, source: &Path) -> Result<Vec<Sentence>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| ArcaneError::io(source, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let s: Sentence = serde_json::from_str(&line)
            .map_err(|e| ArcaneError::format(source, format!("line {}: {e}", i + 1)))?;
        out.push(s);
    }
    Ok(out)
}

/// SplitMix64 (Steele et al. 2014): a tiny generator whose output never changes, so the
/// bundled split is the same in every build.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// The groups `(source, label)` in order of first appearance, each with its sentences.
fn groups(sentences: &[Sentence]) -> Vec<((String, u8), Vec<Sentence>)> {
    let mut groups: Vec<((String, u8), Vec<Sentence>)> = Vec::new();
    for s in sentences {
        let key = (s.source.clone(), s.label);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(s.clone()),
            None => groups.push((key, vec![s.clone()])),
        }
    }
    groups
}

/// Shuffles every (source, label) group with `seed` and holds out its first
/// `round(test_fraction · size)` sentences.
pub fn split(sentences: &[Sentence], test_fraction: f64, seed: u64) -> Split {
    let mut rng = SplitMix64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (_, mut members) in groups(sentences) {
        rng.shuffle(&mut members);
        let n_test = (members.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    Split { train, test }
}

/// Pairs every positive sentence with a negative one of the same source (empty prompt,
/// chosen = positive), `rounds` times with the negatives rotated by one each round.
pub fn preference_pairs(sentences: &[Sentence], rounds: usize) -> Vec<PreferencePair> {
    let mut sources: Vec<&str> = Vec::new();
    for s in sentences {
        if !sources.contains(&s.source.as_str()) {
            sources.push(&s.source);
        }
    }
    let mut pairs = Vec::new();
    for round in 0..rounds {
        for source in &sources {
            let of = |label| -> Vec<&Sentence> {
                sentences
                    .iter()
                    .filter(|s| s.source == *source && s.label == label)
                    .collect()
            };
            let (pos, neg) = (of(1), of(0));
            if neg.is_empty() {
                continue;
            }
            for (i, p) in pos.iter().enumerate() {
                pairs.push(PreferencePair {
                    prompt: String::new(),
                    chosen: p.text.clone(),
                    rejected: neg[(i + round) % neg.len()].text.clone(),
                    margin: None,
                });
            }
        }
    }
    pairs
}

/// The first `words` words of every sentence that has at least `words + 2` (so that there is
/// something left to continue).
pub fn prompts(sentences: &[Sentence], words: usize) -> Vec<PromptRecord> {
    sentences
        .iter()
        .filter_map(|s| {
            let w: Vec<&str> = s.text.split_whitespace().collect();
            (w.len() >= words + 2).then(|| PromptRecord {
                prompt: w[..words].join(" "),
            })
        })
        .collect()
}

/// A line of `reviews_train.jsonl`: a document for `prepare`.
#[derive(Serialize)]
struct Review<'a> {
    text: &'a str,
}

/// Writes the derived files of the bundled data into `dir`: pairs (2 rounds for training, 1
/// held out), prompts of both halves, and the training sentences as documents for
/// fine-tuning a language model on reviews.
pub fn write_derived(dir: &Path) -> Result<Split> {
    let split = split(&bundled_sentences()?, TEST_FRACTION, SPLIT_SEED);
    write_jsonl(
        &dir.join(DERIVED_FILES[0]),
        &preference_pairs(&split.train, 2),
    )?;
    write_jsonl(
        &dir.join(DERIVED_FILES[1]),
        &preference_pairs(&split.test, 1),
    )?;
    write_jsonl(
        &dir.join(DERIVED_FILES[2]),
        &prompts(&split.train, PROMPT_WORDS),
    )?;
    write_jsonl(
        &dir.join(DERIVED_FILES[3]),
        &prompts(&split.test, PROMPT_WORDS),
    )?;
    let reviews: Vec<Review> = split
        .train
        .iter()
        .map(|s| Review { text: &s.text })
        .collect();
    write_jsonl(&dir.join(DERIVED_FILES[4]), &reviews)?;
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stratified_disjoint_and_fixed() {
        let all = bundled_sentences().unwrap();
        assert_eq!(all.len(), 3000);
        let s = split(&all, TEST_FRACTION, SPLIT_SEED);
        assert_eq!((s.train.len(), s.test.len()), (2400, 600));
        for (_, members) in groups(&s.test) {
            assert_eq!(members.len(), 100);
        }
        // Every sentence lands in exactly one half (17 texts occur twice in the data).
        let key = |x: &Sentence| (x.source.clone(), x.label, x.text.clone());
        let mut halves: Vec<_> = s.train.iter().chain(&s.test).map(key).collect();
        let mut original: Vec<_> = all.iter().map(key).collect();
        halves.sort();
        original.sort();
        assert_eq!(halves, original);
        assert_eq!(s, split(&all, TEST_FRACTION, SPLIT_SEED));
        assert_ne!(s.test, split(&all, TEST_FRACTION, SPLIT_SEED + 1).test);
        let pairs = preference_pairs(&s.test, 1);
        assert_eq!(pairs.len(), 300);
        let positive = |t: &str| all.iter().any(|x| x.text == t && x.label == 1);
        assert!(pairs
            .iter()
            .all(|p| positive(&p.chosen) && !positive(&p.rejected)));
    }
}
