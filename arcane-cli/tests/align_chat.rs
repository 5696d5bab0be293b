//! The alignment commands in chat format through the binary, on a tiny GPT-2-vocabulary model:
//! SFT on conversations gives the base Arcane's ChatML, `lora merge` passes it on, and the
//! reward model, `reward eval`, DPO, PPO and `eval reward` read conversational pairs and
//! prompts rendered with it; a conversational pair scores as its pre-rendered text does, and a
//! reward model of another format is refused.

use std::path::Path;

mod common;
use common::{bin, fails, ok};

fn write_lines(path: &Path, rows: &[serde_json::Value]) {
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

fn assistant(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "assistant", "content": text}])
}

const REPLIES: [(&str, &str); 4] = [
    ("A wonderful film.", "A dull film."),
    ("Great acting.", "Bad acting."),
    ("I loved it.", "I hated it."),
    ("Superb.", "Awful."),
];

/// The same pairs as conversations and as the text ChatML renders for them.
fn pairs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (chat, text) = (dir.join("pairs.jsonl"), dir.join("pairs_text.jsonl"));
    let rendered = "<|im_start|>user\nReview it.<|im_end|>\n<|im_start|>assistant\n";
    write_lines(
        &chat,
        &REPLIES
            .iter()
            .map(|(c, r)| serde_json::json!({"prompt": user("Review it."), "chosen": assistant(c), "rejected": assistant(r)}))
            .collect::<Vec<_>>(),
    );
    write_lines(
        &text,
        &REPLIES
            .iter()
            .map(|(c, r)| serde_json::json!({"prompt": rendered, "chosen": format!("{c}<|im_end|>"), "rejected": format!("{r}<|im_end|>")}))
            .collect::<Vec<_>>(),
    );
    (chat, text)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn cmd(args: &[&str], paths: &[(&str, &Path)]) -> std::process::Command {
    let mut c = bin();
    c.args(args);
    for (flag, path) in paths {
        c.arg(flag).arg(path);
    }
    c
}

#[test]
fn sft_merge_reward_dpo_and_ppo_in_chat_format() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let base = t.join("base");
    common::tiny_padded_gpt2(&base);
    let sft_data = t.join("chats.jsonl");
    write_lines(
        &sft_data,
        &REPLIES
            .iter()
            .map(|(c, _)| serde_json::json!({"messages": [{"role": "user", "content": "Review it."}, {"role": "assistant", "content": c}]}))
            .collect::<Vec<_>>(),
    );
    let (adapter, merged) = (t.join("sft"), t.join("merged"));
    ok(&mut cmd(
        &[
            "sft",
            "--no-dashboard",
            "--max-steps",
            "2",
            "--micro-batch",
            "2",
            "--lora-rank",
            "2",
        ],
        &[
            ("--model", &base),
            ("--data", &sft_data),
            ("--out", &adapter),
        ],
    ));
    ok(&mut cmd(
        &["lora", "merge"],
        &[
            ("--model", &base),
            ("--adapter", &adapter),
            ("--out", &merged),
        ],
    ));
    // The merged model reads ChatML: the next stages find the SFT run's format in it.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("arcane.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["tokenizer"], "gpt2-chatml");

    let (chat_pairs, text_pairs) = pairs(t);
    let rm = t.join("rm");
    ok(&mut cmd(
        &["reward", "train", "--max-steps", "2", "--batch", "2"],
        &[
            ("--model", &merged),
            ("--data", &chat_pairs),
            ("--out", &rm),
        ],
    ));
    assert!(rm.join("reward_chat.json").is_file());
    // A conversational pair scores exactly as its pre-rendered text.
    let eval = |data: &Path| {
        json(&ok(&mut cmd(
            &["reward", "eval", "--json"],
            &[("--model", &rm), ("--data", data)],
        )))
    };
    let (a, b) = (eval(&chat_pairs), eval(&text_pairs));
    assert_eq!(a["n"], 4);
    assert_eq!(
        (&a["loss"], &a["margin_mean"]),
        (&b["loss"], &b["margin_mean"])
    );
    assert!(a["loss"].as_f64().unwrap() > 0.0);

    // DPO on both forms: the same held-out figures; the full model keeps ChatML.
    let dpo = |data: &Path, out: &Path| {
        json(&ok(&mut cmd(
            &["dpo", "--max-steps", "1", "--batch", "2", "--json"],
            &[
                ("--model", &merged),
                ("--data", data),
                ("--eval-data", data),
                ("--out", out),
            ],
        )))
    };
    let (d1, d2) = (
        dpo(&chat_pairs, &t.join("dpo")),
        dpo(&text_pairs, &t.join("dpo2")),
    );
    for key in ["eval/loss", "eval/rewards/margins", "eval/logps/chosen"] {
        assert_eq!(d1[key], d2[key], "{key}");
    }
    let dpo_manifest = std::fs::read_to_string(t.join("dpo/arcane.json")).unwrap();
    assert!(dpo_manifest.contains("gpt2-chatml"), "{dpo_manifest}");

    // PPO and eval reward on conversational prompts of several lengths.
    let prompts = t.join("prompts.jsonl");
    write_lines(
        &prompts,
        &[
            "Review it.",
            "Review the film, please.",
            "Say something about the actors.",
        ]
        .iter()
        .map(|p| serde_json::json!({"prompt": user(p)}))
        .collect::<Vec<_>>(),
    );
    let rl = [
        "--max-steps",
        "1",
        "--rollouts",
        "4",
        "--minibatch",
        "2",
        "--response-tokens",
        "4",
    ];
    ok(&mut cmd(
        &[&["ppo"], &rl[..], &["--reward"], &[rm.to_str().unwrap()]].concat(),
        &[
            ("--model", &merged),
            ("--prompts", &prompts),
            ("--out", &t.join("ppo")),
        ],
    ));
    let out = json(&ok(&mut cmd(
        &[
            "eval",
            "reward",
            "--samples",
            "6",
            "--response-tokens",
            "4",
            "--json",
            "--reward",
            "lexicon",
        ],
        &[("--model", &merged), ("--prompts", &prompts)],
    )));
    assert_eq!(out["n"], 6);
    assert_eq!(out["kl_mean"], 0.0);

    // A reward model of plain-text pairs never read ChatML conversations: refused.
    let plain = t.join("rm-plain");
    ok(&mut cmd(
        &["reward", "train", "--max-steps", "1", "--batch", "2"],
        &[
            ("--model", &merged),
            ("--data", &text_pairs),
            ("--out", &plain),
        ],
    ));
    assert!(!plain.join("reward_chat.json").exists());
    let err = fails(&mut cmd(
        &[&["ppo"], &rl[..], &["--reward"], &[plain.to_str().unwrap()]].concat(),
        &[
            ("--model", &merged),
            ("--prompts", &prompts),
            ("--out", &t.join("ppo2")),
        ],
    ));
    assert!(
        err.contains("plain-text pairs") && err.contains("conversational pairs"),
        "{err}"
    );
}
