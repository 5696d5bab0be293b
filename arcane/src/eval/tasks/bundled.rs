//! The evaluation sets bundled into the library (`datasets/*/` at the repository root, each
//! with a README giving its source and licence; ~6 MB gzipped in all), used when no data file
//! is given, as the sentiment data of `align::sentiment` is.

use std::path::Path;

use super::{Doc, Task};
use crate::error::Result;
use crate::jsonl::{gunzip, BadLine};

/// The bundled file of `task`: its path in the repository (for messages) and its gzipped JSON
/// lines.
pub fn bundled(task: Task) -> (&'static str, &'static [u8]) {
    match task {
        Task::Piqa => (
            "datasets/piqa/piqa_validation.jsonl.gz",
            include_bytes!("../../../../datasets/piqa/piqa_validation.jsonl.gz"),
        ),
        Task::ArcEasy => (
            "datasets/arc/arc_easy_test.jsonl.gz",
            include_bytes!("../../../../datasets/arc/arc_easy_test.jsonl.gz"),
        ),
        Task::ArcChallenge => (
            "datasets/arc/arc_challenge_test.jsonl.gz",
            include_bytes!("../../../../datasets/arc/arc_challenge_test.jsonl.gz"),
        ),
        Task::Winogrande => (
            "datasets/winogrande/winogrande_xl_validation.jsonl.gz",
            include_bytes!("../../../../datasets/winogrande/winogrande_xl_validation.jsonl.gz"),
        ),
        Task::Lambada => (
            "datasets/lambada/lambada_openai_test.jsonl.gz",
            include_bytes!("../../../../datasets/lambada/lambada_openai_test.jsonl.gz"),
        ),
        Task::Mmlu => (
            "datasets/mmlu/mmlu_test.jsonl.gz",
            include_bytes!("../../../../datasets/mmlu/mmlu_test.jsonl.gz"),
        ),
        Task::Hellaswag => (
            "datasets/hellaswag/hellaswag_val.jsonl.gz",
            include_bytes!("../../../../datasets/hellaswag/hellaswag_val.jsonl.gz"),
        ),
    }
}

impl Task {
    /// The documents of the bundled split.
    pub fn bundled_docs(self, skip_bad: bool) -> Result<(Vec<Doc>, Vec<BadLine>)> {
        let (name, bytes) = bundled(self);
        self.parse_docs(gunzip(bytes), Path::new(name), skip_bad)
    }
}
