#!/usr/bin/env python3
"""Compares `arcane-cli eval suite --predictions A` with `eval_reference.py --predictions B`:
per document equal `pred` / `pred_norm` / `is_greedy` / `tokens`, and the largest log-likelihood
difference per task.

    python3 scripts/compare_predictions.py A B
"""
import json
import os
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main(a, b):
    ok = True
    for name in sorted(os.listdir(b)):
        if not os.path.exists(os.path.join(a, name)):
            continue
        ours, theirs = rows(os.path.join(a, name)), rows(os.path.join(b, name))
        assert len(ours) == len(theirs), name
        worst, mismatches = 0.0, 0
        for o, t in zip(ours, theirs):
            for key in ("label", "pred", "pred_norm", "is_greedy", "tokens"):
                if o.get(key) != t.get(key):
                    mismatches += 1
                    print(f"{name} doc {t['index']}: {key} {o.get(key)} vs {t.get(key)}")
            worst = max([worst] + [abs(x - y) for x, y in zip(o["logliks"], t["logliks"])])
        ok &= mismatches == 0
        print(f"{name}: {len(ours)} documents, {mismatches} mismatches, max |Δ loglik| {worst:.2e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
