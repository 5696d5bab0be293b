#!/usr/bin/env python3
"""Exports every Hugging Face fixture with `arcane-cli convert --format hf` and loads the result
back in transformers, comparing its logits with the original checkpoint's.

Not run by CI (CI has no Python); the Rust tests check the exported tensors and config against
the original files, this checks that transformers itself accepts them. Run it after
`cargo build --release -p arcane-cli`:

    python3 scripts/check_hf_export.py [--cli target/release/arcane-cli] [--tolerance 1e-5]

Prints the largest absolute logit difference per architecture; exits non-zero above the
tolerance or when transformers warns about missing or unexpected weights.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "arcane" / "tests" / "fixtures"
NAMES = ["llama", "qwen2", "qwen3", "mistral", "gemma", "phi3", "llama3", "gpt2"]


def logits(directory, tokens):
    model, info = AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    with torch.no_grad():
        out = model.eval()(torch.tensor([tokens])).logits[0]
    return out, type(model).__name__, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", default=str(ROOT / "target" / "release" / "arcane-cli"))
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    logging.set_verbosity_error()
    tokens = [(t * 41 + 7) % 512 for t in range(20)]
    worst, failed = 0.0, False
    for name in NAMES:
        source = FIXTURES / name
        vocab = 50257 if name == "gpt2" else 512
        seq = [t % vocab for t in tokens]
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([args.cli, "convert", "--model", str(source), "--out", out,
                            "--format", "hf"], check=True, capture_output=True)
            expected, cls, _ = logits(source, seq)
            got, exported_cls, problems = logits(out, seq)
        diff = (got - expected).abs().max().item()
        worst = max(worst, diff)
        ok = diff <= args.tolerance and cls == exported_cls and not problems
        failed |= not ok
        print(f"{name:8} {cls:20} -> {exported_cls:20} max |logit diff| {diff:.3g}"
              f"{'' if not problems else f'  loading problems: {problems}'}"
              f"{'' if ok else '  FAILED'}")
    print(f"largest difference {worst:.3g}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
