#!/usr/bin/env python3
"""PyTorch reference for `arcane-cli bench hellaswag`: the same examples scored the same way.

    BENCH_THREADS=2 python3 scripts/hellaswag_reference.py                 # random GPT-2 124M
    python3 scripts/hellaswag_reference.py --model DIR --predictions       # a GPT-2 checkpoint

Needs torch and transformers (the benchmark virtualenv of ../shared/bench has both). Scoring
is Arcane's (`arcane/src/eval/hellaswag.rs`, build-nanogpt's completion style): per example,
four rows `context + " " + ending` in GPT-2 tokens (cut from the left to the context window),
right-padded with token 0 into one batch; the transformer runs on all rows, the vocabulary
head only on the positions that predict an ending token; an ending's loss is the sum (acc)
or mean (acc_norm) of their negative log-probabilities, and the prediction is the ending with
the least. The default workload is Arcane's benchmark: the 8 bundled validation examples
(`arcane/tests/fixtures/hellaswag.jsonl`) repeated to 32, one example per forward, fp32,
`BENCH_THREADS` threads (default 2), one warm-up pass, then `--repeats` timed passes; one
JSON line with examples/s (median). With `--model`, the per-example losses and predictions
can be compared with `arcane-cli eval hellaswag --model DIR --data FILE --json`.
"""

import argparse
import glob
import json
import os
import pathlib
import shutil
import statistics
import tempfile
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "arcane" / "tests" / "fixtures" / "hellaswag.jsonl"


def tokenizer_from(dir_arg):
    """GPT-2's BPE from tiktoken-rs's assets (encoder.json, vocab.bpe), as Arcane uses it."""
    pattern = os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-*/assets")
    candidates = [dir_arg] if dir_arg else sorted(glob.glob(pattern))
    if not candidates or not (pathlib.Path(candidates[-1]) / "encoder.json").is_file():
        raise SystemExit("GPT-2 tokenizer files not found; pass --tokenizer-dir with "
                         "encoder.json and vocab.bpe (tiktoken-rs's assets folder)")
    src = pathlib.Path(candidates[-1])
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(src / "encoder.json", pathlib.Path(tmp) / "vocab.json")
        shutil.copy(src / "vocab.bpe", pathlib.Path(tmp) / "merges.txt")
        return GPT2Tokenizer.from_pretrained(tmp)


def render(tok, ex, window):
    """Four rows and, per row, (first ending position, number of ending tokens)."""
    ctx = tok(ex["ctx"])["input_ids"]
    rows, ends = [], []
    for ending in ex["endings"]:
        end = tok(" " + ending)["input_ids"]
        row = (ctx + end)[-window:]
        n_end = min(len(end), len(row) - 1)
        rows.append(row)
        ends.append((len(row) - n_end, n_end))
    return rows, ends


@torch.no_grad()
def score(model, rendered):
    """One example (four rows) in one forward: per-ending sum and mean losses."""
    rows, ends = rendered
    t = max(len(r) for r in rows)
    ids = torch.zeros((4, t), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    hidden = model.transformer(input_ids=ids).last_hidden_state  # [4, T, C]
    pos, tgt = [], []
    for i, (start, n) in enumerate(ends):
        for p in range(start, start + n):
            pos.append((i, p - 1))
            tgt.append(rows[i][p])
    picked = hidden[[p[0] for p in pos], [p[1] for p in pos]]  # [N, C]
    logp = torch.log_softmax(model.lm_head(picked).float(), dim=-1)
    lp = logp[torch.arange(len(tgt)), torch.tensor(tgt)].tolist()
    sums, means, k = [], [], 0
    for _, n in ends:
        s = -sum(lp[k : k + n])
        k += n
        sums.append(s)
        means.append(s / max(n, 1))
    return sums, means


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SAMPLE), help="HellaSwag JSONL (default: the bundled sample)")
    ap.add_argument("--examples", type=int, default=32, help="examples per pass (the file repeated)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", help="a Hugging Face GPT-2 directory (default: random GPT-2 124M)")
    ap.add_argument("--tokenizer-dir", help="folder with encoder.json and vocab.bpe")
    ap.add_argument("--predictions", action="store_true", help="also print one line per example")
    args = ap.parse_args()

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = (GPT2LMHeadModel.from_pretrained(args.model) if args.model
             else GPT2LMHeadModel(GPT2Config())).float().eval()
    window = model.config.n_positions
    tok = tokenizer_from(args.tokenizer_dir)
    lines = [json.loads(l) for l in open(args.data) if l.strip()]
    examples = [lines[i % len(lines)] for i in range(args.examples if not args.model else len(lines))]
    rendered = [render(tok, ex, window) for ex in examples]

    def run():
        return [score(model, r) for r in rendered]

    results = run()  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = run()
        seconds.append(time.perf_counter() - start)
    if args.predictions:
        for ex, (sums, means) in zip(examples, results):
            print(json.dumps({"ind": ex["ind"], "label": ex["label"], "sum_losses": sums,
                              "mean_losses": means, "pred": min(range(4), key=lambda i: sums[i]),
                              "pred_norm": min(range(4), key=lambda i: means[i])}))
    median = statistics.median(seconds)
    print(json.dumps({
        "bench": "hellaswag", "engine": "torch-eager", "model": args.model or "gpt2-124m (random)",
        "examples": len(examples), "repeats": args.repeats, "median_s": round(median, 4),
        "examples_per_s": round(len(examples) / median, 3), "threads": THREADS,
        "torch": torch.__version__, "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
