//! Which special tokens a prompt gets, as `tokenizer(text)` gives them in transformers.
//!
//! The rule: `tokenizer.json`'s post-processor decides (Llama 3, Mistral and Gemma add a BOS,
//! Qwen adds nothing). Where `tokenizer_config.json` sets `add_bos_token` or `add_eos_token`
//! (older Llama 2 / Mistral / Gemma repositories), those switches win, and the post-processor
//! is rebuilt as transformers 4.x's `LlamaTokenizerFast.update_post_processor` did:
//! `[bos] $A [eos]`. transformers 5 (5.24 checked) ignores the switches whenever a
//! `tokenizer.json` exists; the two rules differ only for a repository whose switches
//! contradict its own `tokenizer.json`, and Arcane follows the switches there because they
//! are what the repository's authors asked for.
//!
//! Chat prompts never get these tokens: a chat template writes its own BOS, so a rendered
//! conversation is encoded with `add_special_tokens=False` (transformers' `apply_chat_template`).

use tokenizers::processors::template::TemplateProcessing;

use super::config::TokenizerConfig;

/// Text of a probe whose encoding with and without special tokens shows what is added.
const PROBE: &str = "a";

/// The special tokens `encode(text, true)` puts around a text, and which file said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecialTokensPolicy {
    /// Tokens in front of the text (`["<s>"]` for Llama 2).
    pub prefix: Vec<String>,
    /// Tokens after the text.
    pub suffix: Vec<String>,
    /// Which file decided: `tokenizer.json` or `tokenizer_config.json`; `gpt2` for GPT-2's
    /// tokenizer, which adds nothing.
    pub source: &'static str,
}

impl SpecialTokensPolicy {
    /// GPT-2's: nothing added (as transformers' GPT2TokenizerFast).
    pub fn gpt2() -> Self {
        Self {
            prefix: Vec::new(),
            suffix: Vec::new(),
            source: "gpt2",
        }
    }

    /// Applies `config`'s `add_bos_token` / `add_eos_token` to `tokenizer` (rebuilding its
    /// post-processor) where it sets them, then measures what the tokenizer adds. `Err`: the
    /// switches ask for a token the tokenizer lacks.
    pub fn apply(
        tokenizer: &mut tokenizers::Tokenizer,
        config: &TokenizerConfig,
    ) -> Result<Self, String> {
        let switched = config.add_bos_token.is_some() || config.add_eos_token.is_some();
        if switched {
            let processor = rebuilt_processor(tokenizer, config)?;
            tokenizer.with_post_processor(Some(processor));
        }
        let with = tokenizer.encode(PROBE, true).map_err(|e| e.to_string())?;
        let without = tokenizer.encode(PROBE, false).map_err(|e| e.to_string())?;
        let (with, without) = (with.get_ids(), without.get_ids());
        let start = with
            .windows(without.len().max(1))
            .position(|w| w == without)
            .unwrap_or(with.len());
        let name = |ids: &[u32]| {
            ids.iter()
                .map(|&id| {
                    tokenizer
                        .id_to_token(id)
                        .unwrap_or_else(|| format!("#{id}"))
                })
                .collect::<Vec<_>>()
        };
        let end = (start + without.len()).min(with.len());
        Ok(Self {
            prefix: name(&with[..start]),
            suffix: name(&with[end..]),
            source: if switched {
                "tokenizer_config.json"
            } else {
                "tokenizer.json"
            },
        })
    }

    /// Whether anything is added.
    pub fn adds_nothing(&self) -> bool {
        self.prefix.is_empty() && self.suffix.is_empty()
    }
}

impl std::fmt::Display for SpecialTokensPolicy {
    /// `adds BOS <s> (tokenizer.json)`, `adds <s> ... </s>`, `adds nothing (gpt2)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.prefix.is_empty(), self.suffix.is_empty()) {
            (true, true) => write!(f, "adds nothing")?,
            (false, true) => write!(f, "adds BOS {}", self.prefix.join(" "))?,
            (true, false) => write!(f, "adds EOS {}", self.suffix.join(" "))?,
            (false, false) => write!(
                f,
                "adds BOS {} and EOS {}",
                self.prefix.join(" "),
                self.suffix.join(" ")
            )?,
        }
        write!(f, " ({})", self.source)
    }
}

/// transformers 4.x's `update_post_processor`: `bos:0 $A:0 eos:0` with the switches' tokens.
fn rebuilt_processor(
    tokenizer: &tokenizers::Tokenizer,
    config: &TokenizerConfig,
) -> Result<TemplateProcessing, String> {
    let mut tokens = Vec::new();
    for (switch, name) in [
        (config.add_bos_token, "bos_token"),
        (config.add_eos_token, "eos_token"),
    ] {
        if switch != Some(true) {
            continue;
        }
        // transformers turns the switch off when the token is not set at all.
        let Some(content) = config.token(name) else {
            continue;
        };
        let id = tokenizer.token_to_id(content).ok_or_else(|| {
            format!(
                "tokenizer_config.json asks for {name} {content:?} (add_{}_token), which is not in \
                 the vocabulary; fix the file or remove the switch",
                &name[..3]
            )
        })?;
        tokens.push((name, content.to_string(), id));
    }
    // `<s>:0 $A:0 </s>:0`, and for pairs the same again with `$B:1`.
    let piece = |sequence: &str, type_id: u32| {
        let bos = tokens.iter().find(|t| t.0 == "bos_token");
        let eos = tokens.iter().find(|t| t.0 == "eos_token");
        let mut parts = Vec::new();
        parts.extend(bos.map(|t| format!("{}:{type_id}", t.1)));
        parts.push(format!("{sequence}:{type_id}"));
        parts.extend(eos.map(|t| format!("{}:{type_id}", t.1)));
        parts.join(" ")
    };
    let single = piece("$A", 0);
    let pair = format!("{single} {}", piece("$B", 1));
    let special: Vec<(String, u32)> = tokens.iter().map(|t| (t.1.clone(), t.2)).collect();
    TemplateProcessing::builder()
        .try_single(single.as_str())
        .and_then(|b| b.try_pair(pair.as_str()))
        .map_err(|e| e.to_string())?
        .special_tokens(special)
        .build()
        .map_err(|e| e.to_string())
}
