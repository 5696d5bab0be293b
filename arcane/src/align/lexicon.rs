//! A lexicon sentiment scorer: the VADER lexicon (Hutto & Gilbert 2014, MIT licence, bundled)
//! summed over the words of a text and squashed into (-1, 1) as VADER's `normalize` does,
//! `s / sqrt(s² + 15)`. A reward that needs no trained model, so that RL can be tested and
//! reward hacking of a learned reward model can be checked against an independent judge.
//!
//! VADER's rules (negation, intensifiers, capitals) are left out: words are the maximal runs
//! of `[a-z']` in the lower-cased text, each scored by its mean valence in [-4, 4].

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::reward::RewardFn;
use crate::error::{ArcaneError, Result};
use crate::tokenizer::Tokenizer;

/// The bundled VADER lexicon, gzip-compressed (`token TAB mean-valence TAB std TAB ratings`).
pub const VADER_GZ: &[u8] = include_bytes!("../../data/sentiment/vader_lexicon.txt.gz");

/// VADER's normalisation constant `alpha` (the sum's expected maximum is about 15).
const ALPHA: f64 = 15.0;

/// Word valences.
#[derive(Clone, Debug, PartialEq)]
pub struct Lexicon {
    valence: HashMap<String, f64>,
}

impl Lexicon {
    /// The bundled VADER lexicon (7,520 lines, 7,506 distinct tokens: for the 14 listed twice
    /// the later line wins, as in VADER's own dictionary).
    pub fn vader() -> Result<Self> {
        let reader = BufReader::new(flate2::read::GzDecoder::new(VADER_GZ));
        Self::parse(reader, Path::new("vader_lexicon.txt.gz"))
    }

    /// A lexicon file in VADER's format (plain or `.gz`).
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
        if path.to_string_lossy().ends_with(".gz") {
            let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
            Self::parse(reader, path)
        } else {
            Self::parse(BufReader::new(file), path)
        }
    }

    /// Reads `token TAB valence [TAB ...]` lines; `source` names the input in errors.
    pub fn parse(reader: impl BufRead, source: &Path) -> Result<Self> {
        let mut valence = HashMap::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| ArcaneError::io(source, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let token = fields.next().unwrap_or_default();
            let value = fields.next().and_then(|v| v.trim().parse::<f64>().ok());
            match value {
                Some(v) if v.is_finite() && !token.is_empty() => {
                    valence.insert(token.to_string(), v);
                }
                _ => {
                    return Err(ArcaneError::format(
                        source,
                        format!(
                            "line {}: expected `token<TAB>valence` (VADER's lexicon format)",
                            i + 1
                        ),
                    ))
                }
            }
        }
        if valence.is_empty() {
            return Err(ArcaneError::format(source, "the lexicon holds no entries"));
        }
        Ok(Self { valence })
    }

    /// Entries in the lexicon.
    pub fn len(&self) -> usize {
        self.valence.len()
    }

    /// True when the lexicon has no entries (never after a successful parse).
    pub fn is_empty(&self) -> bool {
        self.valence.is_empty()
    }

    /// The valence of one word, if listed.
    pub fn valence(&self, word: &str) -> Option<f64> {
        self.valence.get(word).copied()
    }

    /// The summed valence of the words of `text`.
    pub fn sum(&self, text: &str) -> f64 {
        let lower = text.to_lowercase();
        lower
            .split(|c: char| !(c.is_ascii_lowercase() || c == '\''))
            .filter(|w| !w.is_empty())
            .filter_map(|w| self.valence(w))
            .sum()
    }

    /// `s / sqrt(s² + 15)` of the summed valence `s`: in (-1, 1), 0 for no sentiment words.
    pub fn score(&self, text: &str) -> f64 {
        let s = self.sum(text);
        s / (s * s + ALPHA).sqrt()
    }
}

/// The lexicon as a reward: the score of a response's text (the prompt is not scored, so the
/// reward measures what the policy wrote).
#[derive(Clone, Debug)]
pub struct LexiconReward {
    /// The lexicon.
    pub lexicon: Lexicon,
    tokenizer: Tokenizer,
}

impl LexiconReward {
    /// Scores GPT-2 token ids with `lexicon` (ChatML's two tokens, which a chat policy ends
    /// its turn with, decode as their text, which holds no word).
    pub fn new(lexicon: Lexicon) -> Self {
        Self {
            lexicon,
            tokenizer: Tokenizer::gpt2_chatml(),
        }
    }
}

impl RewardFn for LexiconReward {
    fn score(&mut self, _prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Result<Vec<f32>> {
        responses
            .iter()
            .map(|r| Ok(self.lexicon.score(&self.tokenizer.decode(r)?) as f32))
            .collect()
    }
}
