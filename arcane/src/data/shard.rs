//! Token shards in llm.c's layout, so that shards written by llm.c or nanoGPT tooling (e.g.
//! `fineweb.py`) can be read as they are:
//!
//! | bytes | content |
//! |---|---|
//! | 0..1024 | header: 256 little-endian `i32`; `[0]` magic 20240520, `[1]` version 1, `[2]` token count `n` |
//! | 1024..1024+2n | `n` little-endian `u16` token ids |
//!
//! Version 2 (llm.c's `u32` tokens for Llama 3) is recognised and refused with a hint.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{ArcaneError, Result};
use crate::io::write_atomic;

/// First header word of every shard.
pub const SHARD_MAGIC: i32 = 20240520;
/// The shard version Arcane reads and writes (`u16` tokens).
pub const SHARD_VERSION: i32 = 1;
/// Size of the header.
pub const SHARD_HEADER_BYTES: usize = 256 * 4;

/// Writes `tokens` as a shard at `path`, atomically.
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<()> {
    let mut bytes = Vec::with_capacity(SHARD_HEADER_BYTES + 2 * tokens.len());
    let mut header = [0i32; 256];
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = i32::try_from(tokens.len()).map_err(|_| {
        ArcaneError::InvalidInput(format!(
            "a shard holds at most {} tokens; lower --shard-tokens",
            i32::MAX
        ))
    })?;
    bytes.extend(header.iter().flat_map(|w| w.to_le_bytes()));
    bytes.extend(tokens.iter().flat_map(|t| t.to_le_bytes()));
    write_atomic(path, &bytes)
}

/// Reads and checks a shard header, returning the token count.
pub fn read_shard_header(path: &Path, bytes: &[u8]) -> Result<usize> {
    let fail = |msg: String| ArcaneError::format(path, msg);
    if bytes.len() < SHARD_HEADER_BYTES {
        return Err(fail(format!(
            "{} bytes is too short for a token shard (the header alone is {SHARD_HEADER_BYTES}); \
             the file is truncated or not a shard",
            bytes.len()
        )));
    }
    let word = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if word(0) != SHARD_MAGIC {
        return Err(fail(format!(
            "not a token shard (magic {}, expected {SHARD_MAGIC}); create shards with `arcane-cli prepare`",
            word(0)
        )));
    }
    match word(1) {
        SHARD_VERSION => {}
        2 => return Err(fail(
            "shard version 2 holds u32 tokens (llm.c's Llama 3 format); Arcane reads version 1 \
                 (u16 GPT-2 tokens)"
                .into(),
        )),
        v => {
            return Err(fail(format!(
                "unsupported shard version {v}; expected {SHARD_VERSION}"
            )))
        }
    }
    let n =
        usize::try_from(word(2)).map_err(|_| fail(format!("negative token count {}", word(2))))?;
    let expected = SHARD_HEADER_BYTES + 2 * n;
    if bytes.len() != expected {
        return Err(fail(format!(
            "the header announces {n} tokens ({expected} bytes) but the file has {} bytes; \
             it is truncated or corrupt, re-run `arcane-cli prepare`",
            bytes.len()
        )));
    }
    Ok(n)
}

/// A memory-mapped, validated shard.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    len: usize,
}

impl Shard {
    /// Maps and validates the shard at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ArcaneError::io(path, e))?;
        // SAFETY: read-only mapping; shards are written once, by rename, and never modified.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ArcaneError::io(path, e))?;
        let len = read_shard_header(path, &map)?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            len,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a shard without tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first token id at or above `limit`, with its position, if any: ids a model with a
    /// vocabulary of `limit` cannot embed. One pass over the file.
    pub fn first_id_at_least(&self, limit: u32) -> Option<(usize, u32)> {
        let tokens = &self.map[SHARD_HEADER_BYTES..SHARD_HEADER_BYTES + 2 * self.len];
        // A vectorisable maximum first; the position is only searched for in a bad shard.
        let max = tokens
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .max()
            .unwrap_or(0);
        if u32::from(max) < limit {
            return None;
        }
        tokens
            .chunks_exact(2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
            .enumerate()
            .find(|&(_, id)| id >= limit)
    }

    /// Appends tokens `start..end` to `out`.
    pub fn read_into(&self, start: usize, end: usize, out: &mut Vec<u32>) {
        assert!(
            start <= end && end <= self.len,
            "token range out of the shard"
        );
        let bytes = &self.map[SHARD_HEADER_BYTES + 2 * start..SHARD_HEADER_BYTES + 2 * end];
        out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_and_bad_ones_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let tokens: Vec<u16> = (0..1000).map(|i| (i * 51) as u16).collect();
        write_shard(&path, &tokens).unwrap();
        let shard = Shard::open(&path).unwrap();
        let mut out = Vec::new();
        shard.read_into(10, 20, &mut out);
        assert_eq!(
            out,
            tokens[10..20].iter().map(|&t| t as u32).collect::<Vec<_>>()
        );

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Shard::open(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut bad = bytes.clone();
        bad[0] = 0;
        std::fs::write(&path, &bad).unwrap();
        assert!(Shard::open(&path)
            .unwrap_err()
            .to_string()
            .contains("not a token shard"));
        let mut v2 = bytes;
        v2[4] = 2;
        std::fs::write(&path, &v2).unwrap();
        assert!(Shard::open(&path)
            .unwrap_err()
            .to_string()
            .contains("u32 tokens"));
    }
}
