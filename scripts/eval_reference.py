#!/usr/bin/env python3
"""PyTorch/transformers reference for Arcane's lm-eval tasks (`arcane-cli eval <task>`, `eval suite`).

    python3 scripts/eval_reference.py                       # writes arcane/tests/fixtures/eval_reference.json
    python3 scripts/eval_reference.py --save-random-gpt2-124m DIR   # a random GPT-2 124M in HF format
    BENCH_THREADS=2 python3 scripts/eval_reference.py --model DIR --limit 20 [--predictions OUT]  # timing side

Follows lm-evaluation-harness's code for each task, written out here so that CI needs no
Python and no lm-eval (read at EleutherAI/lm-evaluation-harness 4e7e0d4):
- prompts: the task YAMLs and utils (`piqa.yaml`, `arc_easy.yaml`, `winogrande/
  preprocess_winogrande.py`, `lambada_openai.yaml`, `mmlu/default/_default_template_yaml` with
  the per-subject description, `hellaswag/utils.py`); multiple-choice continuations are
  `" " + choice` (`target_delimiter`), WinoGrande's contexts vary and its continuation is fixed;
- tokens: `TemplateLM._encode_pair` (trailing context whitespace moves to the continuation,
  the whole string is encoded and split at the context's length), with the tokenizer's default
  special tokens (`HFLM.tok_encode`, `add_bos_token` unset: GPT-2 adds none, the Llama
  fixture's tokenizer adds `<s>`);
- scoring: `HFLM._loglikelihood_tokens` (the last `max_length + 1` tokens of context +
  continuation, the last dropped; log-softmax over the whole vocabulary at every position;
  the continuation's summed log-probability and whether each of its tokens is the argmax);
  requests with the same input run once (lm-eval's one-token-continuation cache);
- metrics: `ConfigurableTask.process_results` (`acc` = argmax of log-likelihoods, `acc_norm`
  = argmax of log-likelihood / len(choice) in characters; LAMBADA `acc` = is_greedy) and
  `api/metrics.py` (`mean`, `mean_stderr` = sample std / sqrt(n), `perplexity` =
  exp(-mean), `pooled_sample_stderr` for MMLU over subjects).

Fixture mode scores `arcane/tests/fixtures/evals/*.jsonl` (and `hellaswag.jsonl`) on the
committed tiny models `arcane/tests/fixtures/gpt2` and `llama`, and writes per-document
log-likelihoods, greedy flags, predictions and metrics. Timing mode scores the first
`--limit` documents of each bundled set in `datasets/` on `--model`, one request input per
forward as lm-eval's default batch size 1, and prints one JSON line with the seconds.
"""

import argparse
import glob
import gzip
import json
import math
import os
import pathlib
import re
import shutil
import tempfile
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "arcane" / "tests" / "fixtures"
TASKS = ["piqa", "arc_easy", "arc_challenge", "winogrande", "hellaswag", "lambada", "mmlu"]
BUNDLED = {
    "piqa": "datasets/piqa/piqa_validation.jsonl.gz",
    "arc_easy": "datasets/arc/arc_easy_test.jsonl.gz",
    "arc_challenge": "datasets/arc/arc_challenge_test.jsonl.gz",
    "winogrande": "datasets/winogrande/winogrande_xl_validation.jsonl.gz",
    "hellaswag": "datasets/hellaswag/hellaswag_val.jsonl.gz",
    "lambada": "datasets/lambada/lambada_openai_test.jsonl.gz",
    "mmlu": "datasets/mmlu/mmlu_test.jsonl.gz",
}
FIXTURE_FILES = {
    "piqa": "evals/piqa.jsonl", "arc_easy": "evals/arc.jsonl", "winogrande": "evals/winogrande.jsonl",
    "hellaswag": "hellaswag.jsonl", "lambada": "evals/lambada.jsonl", "mmlu": "evals/mmlu.jsonl",
}

# The Llama fixture's 512-token vocabulary spells PIQA's and HellaSwag's answers in more
# tokens than its 64-token window (lm-eval asserts continuation <= max_length): left out.
MODEL_TASKS = {"gpt2": set(FIXTURE_FILES), "llama": {"arc_easy", "winogrande", "lambada", "mmlu"}}


# ---- prompts (lm-eval task configs) ----

def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def doc_requests(task, doc):
    """(requests [(context, continuation)], choices for acc_norm lengths, gold)."""
    if task == "piqa":
        ctx, choices, gold = f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], doc["label"]
    elif task in ("arc_easy", "arc_challenge"):
        ctx = f"Question: {doc['question']}\nAnswer:"
        choices = doc["choices"]["text"]
        gold = doc["choices"]["label"].index(doc["answerKey"])
    elif task == "hellaswag":
        c = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        ctx = hellaswag_preprocess(doc["activity_label"] + ": " + c)
        choices = [hellaswag_preprocess(e) for e in doc["endings"]]
        gold = int(doc["label"])
    elif task == "mmlu":
        description = f"The following are multiple choice questions (with answers) about {' '.join(doc['subject'].split('_'))}.\n\n"
        c = doc["choices"]
        ctx = description + f"{doc['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"
        choices, gold = ["A", "B", "C", "D"], doc["answer"]
    elif task == "winogrande":
        idx = doc["sentence"].index("_")
        contexts = [doc["sentence"][:idx] + o for o in (doc["option1"], doc["option2"])]
        target = doc["sentence"][idx + 1:].strip()
        return [(c, " " + target) for c in contexts], contexts, {"1": 0, "2": 1}[doc["answer"]]
    elif task == "lambada":
        text = doc["text"]
        ctx, cont = " ".join(text.split(" ")[:-1]), " " + text.split(" ")[-1]
        return [(ctx, cont)], [cont], 0
    return [(ctx, " " + ch) for ch in choices], choices, gold


# ---- tokens and scoring (lm-eval's TemplateLM / HFLM) ----

def encode_pair(encode, context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole_enc = encode(context + continuation)
    context_enc = encode(context)
    return context_enc, whole_enc[len(context_enc):]


@torch.no_grad()
def loglikelihoods(model, max_length, pairs):
    """(loglik, is_greedy) per (context_enc, continuation_enc), one input per forward."""
    inputs = {}
    for i, (ctx, cont) in enumerate(pairs):
        inp = tuple((ctx + cont)[-(max_length + 1):][:-1])
        inputs.setdefault(inp, []).append(i)
    out = [None] * len(pairs)
    for inp in sorted(inputs, key=lambda t: (-len(t), t)):
        logits = F.log_softmax(model(torch.tensor([inp])).logits.float(), dim=-1)[0]  # [T, V]
        for i in inputs[inp]:
            cont = pairs[i][1]
            sel = logits[len(inp) - len(cont):]  # the positions predicting the continuation
            greedy = bool((sel.argmax(dim=-1) == torch.tensor(cont)).all())
            ll = float(sel.gather(1, torch.tensor(cont).unsqueeze(1)).sum())
            out[i] = (ll, greedy, len(cont))
    return out


# ---- metrics (lm-eval's process_results and api/metrics.py) ----

def mean(xs):
    return sum(xs) / len(xs)


def mean_stderr(xs):
    if len(xs) < 2:
        return None
    mu = mean(xs)
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) / math.sqrt(len(xs))


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def score_task(task, docs, model, max_length, encode):
    reqs = [doc_requests(task, d) for d in docs]
    pairs = [encode_pair(encode, c, k) for r in reqs for (c, k) in r[0]]
    answers = loglikelihoods(model, max_length, pairs)
    rows, k = [], 0
    for i, (requests, choices, gold) in enumerate(reqs):
        mine = answers[k:k + len(requests)]
        k += len(requests)
        lls = [a[0] for a in mine]
        row = {"index": i, "label": gold, "pred": argmax(lls), "logliks": lls,
               "is_greedy": [a[1] for a in mine], "tokens": [a[2] for a in mine]}
        if task in ("piqa", "arc_easy", "arc_challenge", "hellaswag"):
            row["pred_norm"] = argmax([ll / len(c) for ll, c in zip(lls, choices)])
        if task == "mmlu":
            row["subject"] = docs[i]["subject"]
        rows.append(row)
    return {"docs": rows, "metrics": metrics(task, rows)}


def metrics(task, rows):
    if task == "lambada":
        acc = [float(r["is_greedy"][0]) for r in rows]
        return {"acc": mean(acc), "acc_stderr": mean_stderr(acc),
                "perplexity": math.exp(-mean([r["logliks"][0] for r in rows]))}
    acc = [float(r["pred"] == r["label"]) for r in rows]
    m = {"acc": mean(acc), "acc_stderr": mean_stderr(acc)}
    if "pred_norm" in rows[0]:
        norm = [float(r["pred_norm"] == r["label"]) for r in rows]
        m.update(acc_norm=mean(norm), acc_norm_stderr=mean_stderr(norm))
    if task == "mmlu":
        subjects = {}
        for r in rows:
            subjects.setdefault(r["subject"], []).append(float(r["pred"] == r["label"]))
        per = {s: {"n": len(h), "acc": mean(h), "acc_stderr": mean_stderr(h)} for s, h in sorted(subjects.items())}
        m["subjects"] = per
        m["acc_macro"] = mean([p["acc"] for p in per.values()])
        sizes = [p["n"] for p in per.values()]
        if all(p["acc_stderr"] is not None for p in per.values()):
            var = sum((n - 1) * p["acc_stderr"] ** 2 * n for n, p in zip(sizes, per.values())) / (sum(sizes) - len(sizes))
            m["acc_stderr"] = math.sqrt(var / sum(sizes))
        else:
            m["acc_stderr"] = None
    return m


# ---- models and tokenizers ----

def gpt2_encoder():
    """GPT-2's BPE from tiktoken-rs's assets (encoder.json, vocab.bpe), as Arcane uses it."""
    from transformers import GPT2TokenizerFast
    pattern = os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-*/assets")
    src = pathlib.Path(sorted(glob.glob(pattern))[-1])
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(src / "encoder.json", pathlib.Path(tmp) / "vocab.json")
        shutil.copy(src / "vocab.bpe", pathlib.Path(tmp) / "merges.txt")
        tok = GPT2TokenizerFast.from_pretrained(tmp)
    return lambda s: tok.encode(s)


def hf_encoder(path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(path))
    return lambda s: tok.encode(s).ids  # add_special_tokens=True: the tokenizer's default


def load(model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir).float().eval()
    c = model.config
    max_length = next(getattr(c, a) for a in ("n_positions", "max_position_embeddings", "n_ctx") if hasattr(c, a))
    tok_file = pathlib.Path(model_dir) / "tokenizer.json"
    encode = hf_encoder(tok_file) if tok_file.is_file() else gpt2_encoder()
    return model, max_length, encode


def read_jsonl(path, limit=None):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(l) for l in f if l.strip()]
    return rows[:limit] if limit else rows


def fixtures():
    torch.set_num_threads(THREADS)
    out = {}
    for name in ("gpt2", "llama"):
        model, max_length, encode = load(FIXTURES / name)
        tok_file = FIXTURES / name / "tokenizer.json"
        bos = False
        if tok_file.is_file():
            from tokenizers import Tokenizer
            t = Tokenizer.from_file(str(tok_file))
            bos = len(t.encode("a").ids) > len(t.encode("a", add_special_tokens=False).ids)
        out[name] = {"bos": bos, "max_length": max_length, "tasks": {
            task: score_task(task, read_jsonl(FIXTURES / path), model, max_length, encode)
            for task, path in FIXTURE_FILES.items() if task in MODEL_TASKS[name]
        }}
    with open(FIXTURES / "eval_reference.json", "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", FIXTURES / "eval_reference.json")


def timing(model_dir, limit, tasks, predictions=None):
    torch.set_num_threads(THREADS)
    model, max_length, encode = load(model_dir)
    docs = {t: read_jsonl(ROOT / BUNDLED[t], limit) for t in tasks}
    start = time.perf_counter()
    scored = {t: score_task(t, docs[t], model, max_length, encode) for t in tasks}
    seconds = time.perf_counter() - start
    results = {t: s["metrics"] for t, s in scored.items()}
    if predictions:
        os.makedirs(predictions, exist_ok=True)
        for t, s in scored.items():
            with open(os.path.join(predictions, f"{t}.jsonl"), "w") as f:
                for row in s["docs"]:
                    f.write(json.dumps(row) + "\n")
    print(json.dumps({"engine": "torch-eager (lm-eval's HFLM scoring)", "model": str(model_dir),
                      "limit": limit, "tasks": {t: {"acc": m["acc"]} for t, m in results.items()},
                      "seconds": round(seconds, 3), "threads": THREADS, "torch": torch.__version__}))


def save_random_gpt2(out):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(out, safe_serialization=True)
    print("wrote a random GPT-2 124M to", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--save-random-gpt2-124m", metavar="DIR")
    ap.add_argument("--model", help="time scoring the bundled sets on this HF model directory")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--predictions", metavar="DIR", help="with --model: per-document rows, DIR/<task>.jsonl")
    args = ap.parse_args()
    if args.save_random_gpt2_124m:
        save_random_gpt2(args.save_random_gpt2_124m)
    elif args.model:
        timing(args.model, args.limit, args.tasks.split(","), args.predictions)
    else:
        fixtures()


if __name__ == "__main__":
    main()
