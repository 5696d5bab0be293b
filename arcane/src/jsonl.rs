//! JSON-lines inputs (HellaSwag, preference pairs, prompts): one JSON value a line, blank lines
//! ignored. A bad line is an error that names it and says how to go on, or, with `skip_bad`,
//! is skipped and reported, so a large file with a few broken lines still loads.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::error::{ArcaneError, Result};

/// A line that was skipped, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses every non-blank line of `reader` as JSON and then with `parse(index, value)`, where
/// `index` is the 0-based line index; `source` names the input in errors. The items may be
/// empty: the caller says what an empty file means.
pub fn parse_lines<T>(
    reader: impl BufRead,
    source: &Path,
    skip_bad: bool,
    parse: impl Fn(usize, &Value) -> std::result::Result<T, String>,
) -> Result<(Vec<T>, Vec<BadLine>)> {
    let (mut items, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| ArcaneError::io(source, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(&line)
            .map_err(|e| format!("not JSON ({e})"))
            .and_then(|v| parse(i, &v));
        match parsed {
            Ok(item) => items.push(item),
            Err(reason) if skip_bad => bad.push(BadLine {
                line: i + 1,
                reason,
            }),
            Err(reason) => {
                return Err(ArcaneError::format(
                    source,
                    format!(
                        "line {}: {reason} (fix the line, or pass --skip-bad to skip bad lines)",
                        i + 1
                    ),
                ))
            }
        }
    }
    Ok((items, bad))
}

/// A buffered reader of `path`, decompressed when its name ends in `.gz`.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    Ok(if path.to_string_lossy().ends_with(".gz") {
        Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            file,
        )))
    } else {
        Box::new(std::io::BufReader::new(file))
    })
}

/// A buffered reader of gzipped bytes (data bundled with `include_bytes!`).
pub fn gunzip(bytes: &[u8]) -> impl BufRead + '_ {
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(bytes))
}
