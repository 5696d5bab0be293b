//! `prepare`: raw text to token shards.
//!
//! Inputs are `.txt` files (one document each), `.jsonl` files (one document per line, in a
//! `text` field) and their `.gz` versions, or folders of them (searched recursively, in name
//! order). Every document is preceded by the tokenizer's document separator: end-of-text
//! (50256) for GPT-2, as in GPT-2's training data; begin-of-sequence for Llama-style
//! tokenizers.
//! Documents are tokenized in parallel but written in input order, so the same inputs always
//! give the same shards. The first `val_tokens` tokens of the stream form the validation split.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::manifest::{DataManifest, SourceFile, DATA_MANIFEST, FORMAT, MANIFEST};
use super::shard::write_shard;
use crate::error::{ArcaneError, Result};
use crate::tokenizer::ModelTokenizer;

/// What to prepare.
#[derive(Clone, Debug)]
pub struct PrepareConfig {
    /// Files or folders to read.
    pub inputs: Vec<PathBuf>,
    /// Output folder (created; earlier shards in it are replaced).
    pub out: PathBuf,
    /// Tokens in the validation split; `None`: 5% of the estimated total, at most 10M.
    pub val_tokens: Option<usize>,
    /// Tokens per shard file (build-nanogpt uses 100M).
    pub shard_tokens: usize,
    /// The tokenizer (GPT-2's for pre-training; a fine-tuned model's own).
    pub tokenizer: ModelTokenizer,
}

/// Progress reported while preparing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrepareProgress {
    /// Uncompressed input bytes read so far.
    pub bytes: u64,
    /// Estimated uncompressed input bytes in all.
    pub total_bytes: u64,
    /// Tokens written so far.
    pub tokens: usize,
    /// Documents read so far.
    pub documents: usize,
}

/// Text of roughly this many bytes is tokenized in parallel at once (bounded memory).
const CHUNK_BYTES: usize = 32 << 20;

/// Prepares a dataset; `progress` is called after each chunk of documents.
pub fn prepare(
    config: &PrepareConfig,
    mut progress: impl FnMut(&PrepareProgress),
) -> Result<DataManifest> {
    if config.shard_tokens == 0 {
        return Err(ArcaneError::InvalidInput(
            "--shard-tokens must be at least 1".into(),
        ));
    }
    let files = collect_files(&config.inputs)?;
    let total_bytes: u64 = files.iter().map(|f| uncompressed_size(f)).sum();
    // About 4 bytes of English per GPT-2 token.
    let estimated_tokens = (total_bytes / 4) as usize;
    let val_target = config
        .val_tokens
        .unwrap_or((estimated_tokens / 20).clamp(1, 10_000_000));
    std::fs::create_dir_all(&config.out).map_err(|e| ArcaneError::io(&config.out, e))?;
    remove_old_outputs(&config.out)?;

    let tokenizer = &config.tokenizer;
    let mut writer = SplitWriter::new(&config.out, val_target, config.shard_tokens);
    let mut state = PrepareProgress {
        total_bytes,
        ..Default::default()
    };
    let mut sources = Vec::new();
    for file in &files {
        let mut source = SourceFile {
            path: file.display().to_string(),
            bytes: 0,
            documents: 0,
            tokens: 0,
        };
        let mut chunk: Vec<String> = Vec::new();
        let mut chunk_bytes = 0;
        let mut flush = |chunk: &mut Vec<String>,
                         source: &mut SourceFile,
                         state: &mut PrepareProgress,
                         writer: &mut SplitWriter|
         -> Result<()> {
            write_documents(tokenizer, chunk, writer, source, state)?;
            chunk.clear();
            progress(state);
            Ok(())
        };
        read_documents(file, |doc| {
            chunk_bytes += doc.len();
            chunk.push(doc);
            if chunk_bytes >= CHUNK_BYTES {
                chunk_bytes = 0;
                flush(&mut chunk, &mut source, &mut state, &mut writer)?;
            }
            Ok(())
        })?;
        flush(&mut chunk, &mut source, &mut state, &mut writer)?;
        sources.push(source);
    }
    let (train_shards, val_shards, train_tokens, val_tokens) = writer.finish()?;
    let tokens = train_tokens + val_tokens;
    if tokens == 0 {
        return Err(ArcaneError::InvalidInput("the inputs hold no text".into()));
    }
    if train_tokens == 0 {
        return Err(ArcaneError::InvalidInput(format!(
            "all {tokens} tokens went to the validation split; lower --val-tokens (now {val_target})"
        )));
    }
    let manifest = DataManifest {
        format: FORMAT.into(),
        version: DATA_MANIFEST.version,
        tokenizer: match tokenizer {
            ModelTokenizer::Gpt2(_) => "gpt2 (tiktoken r50k_base)".into(),
            other => other.name(),
        },
        documents: state.documents,
        tokens,
        train_tokens,
        val_tokens,
        train_shards,
        val_shards,
        sources,
    };
    DATA_MANIFEST.write(&config.out.join(MANIFEST), &manifest)?;
    Ok(manifest)
}

/// Tokenizes `docs` in parallel and writes them in order, each after the tokenizer's document
/// separator, counting them into `source` and `state`.
fn write_documents(
    tokenizer: &ModelTokenizer,
    docs: &[String],
    writer: &mut SplitWriter,
    source: &mut SourceFile,
    state: &mut PrepareProgress,
) -> Result<()> {
    let separator = tokenizer.document_separator();
    let tokenized: Vec<Vec<u32>> = docs
        .par_iter()
        .map(|doc| tokenizer.encode(doc))
        .collect::<Result<_>>()?;
    for (doc, ids) in docs.iter().zip(&tokenized) {
        let tokens = ids.len() + usize::from(separator.is_some());
        if let Some(id) = separator {
            writer.push(id)?;
        }
        for &id in ids {
            writer.push(id)?;
        }
        source.tokens += tokens;
        source.bytes += doc.len() as u64;
        state.bytes += doc.len() as u64;
        state.tokens += tokens;
    }
    source.documents += docs.len();
    state.documents += docs.len();
    Ok(())
}

/// Buffers the token stream and cuts it into validation, then training, shards.
struct SplitWriter<'a> {
    dir: &'a Path,
    val_target: usize,
    shard_tokens: usize,
    buffer: Vec<u16>,
    in_val: bool,
    train: Vec<String>,
    val: Vec<String>,
    counts: [usize; 2],
}

impl<'a> SplitWriter<'a> {
    fn new(dir: &'a Path, val_target: usize, shard_tokens: usize) -> Self {
        Self {
            dir,
            val_target,
            shard_tokens,
            buffer: Vec::new(),
            in_val: val_target > 0,
            train: vec![],
            val: vec![],
            counts: [0, 0],
        }
    }

    fn push(&mut self, id: u32) -> Result<()> {
        let id = u16::try_from(id).map_err(|_| {
            ArcaneError::InvalidInput(format!(
                "token id {id} does not fit the shards' 16 bits (llm.c's version 1 format); \
                 tokenizers of more than 65536 tokens are not supported by prepare"
            ))
        })?;
        self.buffer.push(id);
        let limit = if self.in_val {
            self.val_target
                .saturating_sub(self.counts[1])
                .min(self.shard_tokens)
        } else {
            self.shard_tokens
        };
        if self.buffer.len() >= limit {
            self.flush()?;
            if self.in_val && self.counts[1] >= self.val_target {
                self.in_val = false;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let (names, split, count) = if self.in_val {
            (&mut self.val, "val", &mut self.counts[1])
        } else {
            (&mut self.train, "train", &mut self.counts[0])
        };
        let name = format!("{split}_{:06}.bin", names.len());
        write_shard(&self.dir.join(&name), &self.buffer)?;
        *count += self.buffer.len();
        names.push(name);
        self.buffer.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(Vec<String>, Vec<String>, usize, usize)> {
        self.flush()?;
        Ok((self.train, self.val, self.counts[0], self.counts[1]))
    }
}

/// Files with an extension Arcane reads.
fn is_supported(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".txt", ".jsonl", ".txt.gz", ".jsonl.gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Expands folders and checks files; the result is in a stable (sorted) order.
fn collect_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if inputs.is_empty() {
        return Err(ArcaneError::InvalidInput(
            "no input given; pass --input FILE_OR_DIR".into(),
        ));
    }
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| ArcaneError::io(input, e))?;
        if meta.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                return Err(ArcaneError::format(
                    input,
                    "holds no .txt, .jsonl, .txt.gz or .jsonl.gz files",
                ));
            }
        } else if is_supported(input) {
            files.push(input.clone());
        } else {
            return Err(ArcaneError::format(
                input,
                "unsupported input; expected .txt, .jsonl, .txt.gz or .jsonl.gz",
            ));
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ArcaneError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if is_supported(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// Uncompressed size: the file size, or for gzip the ISIZE trailer (size mod 2^32).
fn uncompressed_size(path: &Path) -> u64 {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if !path.to_string_lossy().ends_with(".gz") || size < 4 {
        return size;
    }
    use std::io::{Seek, SeekFrom};
    let mut trailer = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::End(-4))?;
        f.read_exact(&mut trailer)
    });
    match read {
        Ok(()) => u32::from_le_bytes(trailer) as u64,
        Err(_) => size,
    }
}

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    Ok(if path.to_string_lossy().ends_with(".gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Calls `each` with every document of `path`.
fn read_documents(path: &Path, mut each: impl FnMut(String) -> Result<()>) -> Result<()> {
    let name = path.to_string_lossy();
    let jsonl = name.ends_with(".jsonl") || name.ends_with(".jsonl.gz");
    let mut reader = open(path)?;
    if !jsonl {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| ArcaneError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ArcaneError::format(
                path,
                format!(
                    "not UTF-8 text (invalid byte at offset {}); convert it first, e.g. with iconv",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        return if text.is_empty() { Ok(()) } else { each(text) };
    }
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| ArcaneError::io(path, e))?;
        if n == 0 {
            break;
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| ArcaneError::format(path, format!("line {number} is not UTF-8")))?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ArcaneError::format(path, format!("line {number} is not JSON: {e}")))?;
        let doc = value.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
            ArcaneError::format(path, format!("line {number} has no string field \"text\""))
        })?;
        each(doc.to_string())?;
    }
    Ok(())
}

/// Deletes shards and the manifest of an earlier `prepare` into the same folder.
fn remove_old_outputs(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| ArcaneError::io(dir, e))? {
        let path = entry.map_err(|e| ArcaneError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name == MANIFEST
            || ((name.starts_with("train_") || name.starts_with("val_")) && name.ends_with(".bin"));
        if ours {
            std::fs::remove_file(&path).map_err(|e| ArcaneError::io(&path, e))?;
        }
    }
    Ok(())
}
