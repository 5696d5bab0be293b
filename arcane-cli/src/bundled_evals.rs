//! The evaluation sets bundled with the binary (`datasets/*/`, each with a README giving its
//! source and licence), used when `eval <task>` gets no `--data`.

use arcane::eval::tasks::Task;

/// The bundled file of `task`: its name (for messages) and its gzipped JSON lines.
pub fn bundled(task: Task) -> (&'static str, &'static [u8]) {
    match task {
        Task::Piqa => (
            "datasets/piqa/piqa_validation.jsonl.gz",
            include_bytes!("../../datasets/piqa/piqa_validation.jsonl.gz"),
        ),
        Task::ArcEasy => (
            "datasets/arc/arc_easy_test.jsonl.gz",
            include_bytes!("../../datasets/arc/arc_easy_test.jsonl.gz"),
        ),
        Task::ArcChallenge => (
            "datasets/arc/arc_challenge_test.jsonl.gz",
            include_bytes!("../../datasets/arc/arc_challenge_test.jsonl.gz"),
        ),
        Task::Winogrande => (
            "datasets/winogrande/winogrande_xl_validation.jsonl.gz",
            include_bytes!("../../datasets/winogrande/winogrande_xl_validation.jsonl.gz"),
        ),
        Task::Lambada => (
            "datasets/lambada/lambada_openai_test.jsonl.gz",
            include_bytes!("../../datasets/lambada/lambada_openai_test.jsonl.gz"),
        ),
        Task::Mmlu => (
            "datasets/mmlu/mmlu_test.jsonl.gz",
            include_bytes!("../../datasets/mmlu/mmlu_test.jsonl.gz"),
        ),
        Task::Hellaswag => (
            "datasets/hellaswag/hellaswag_val.jsonl.gz",
            include_bytes!("../../datasets/hellaswag/hellaswag_val.jsonl.gz"),
        ),
    }
}
