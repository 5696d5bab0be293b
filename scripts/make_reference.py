#!/usr/bin/env python3
"""Writes the reference fixtures that Arcane's parity tests compare against.

Not run by CI (CI has no Python). Run it by hand after changing what it produces:

    pip install torch transformers safetensors tokenizers
    python3 scripts/make_reference.py --tokenizer-dir ~/.cargo/registry/src/*/tiktoken-rs-0.12.1/assets

or, for the Llama-style tokenizer alone (needs only `pip install tokenizers`):

    python3 scripts/make_reference.py --llama-tokenizer-only

It builds two tiny random Hugging Face checkpoints with `transformers` on the CPU, in float32:

* `gpt2/`  GPT2LMHeadModel with the full GPT-2 vocabulary (50257) so that real text can be
  tokenized, but width 8, briefly trained on `eval.txt` so that its greedy continuation and loss
  are not those of a uniform guess, and stored as float16 to stay small (the float16 values are
  what both sides compute with, in float32);
* `llama/` LlamaForCausalLM with a 512-token vocabulary, grouped-query attention (4 query heads,
  2 key/value heads), untied head and a non-default RoPE theta, stored as float32;

a Llama-style `llama/tokenizer.json` for the Llama model's 512 ids (SentencePiece-style BPE
with byte fallback, `<s>` in front of prompts, as Llama 2's; trained on `eval.txt` with the
`tokenizers` library) and `tokenizer_reference.json` with its ids for a few strings, with and
without special tokens; and `reference.json` with, for each model: token sequences and transformers' logits for them
(all of them for Llama; for GPT-2's 50257 columns, every 251st column, each row's log-sum-exp and
argmax, to keep the file small), a greedy continuation, and the mean next-token loss over
`eval.txt` with the windowing of `arcane-cli eval loss`, and (GPT-2) the HellaSwag sums and
means of `hellaswag.jsonl` (committed beside it) scored as build-nanogpt does.

With `--archs` (alone, or after the above) it writes one tiny random float32 checkpoint per
further architecture Arcane reads, each with the Llama fixture's 512-token tokenizer and random
norm gains and biases (so that a `(1 + w)` or a missing bias shows):

* `qwen2/`   Qwen2ForCausalLM: q/k/v biases, tied head, `use_sliding_window: false`;
* `qwen3/`   Qwen3ForCausalLM: per-head q/k RMSNorm, explicit `head_dim` 16 (hidden 32, 4 heads);
* `mistral/` MistralForCausalLM: sliding-window attention over 5 positions;
* `gemma/`   GemmaForCausalLM: GeGLU, `(1 + w)` RMSNorm, scaled embeddings, one key/value head,
  `head_dim` 16, the legacy `hidden_act: "gelu"` in its config.json;
* `phi3/`    Phi3ForCausalLM: fused `qkv_proj` and `gate_up_proj`, a sliding window of 8;
* `llama3/`  LlamaForCausalLM with `llama3` RoPE scaling, written in the transformers 4.x style
  (top-level `rope_theta` and `rope_scaling`, `torch_dtype`, `eos_token_id` a list);

and `reference_archs.json` with their logits (every other column, log-sum-exp and argmax of every
row) for two token sequences and a greedy continuation. Only these files change.
"""

import argparse
import json
import math
import pathlib
import shutil
import tempfile

# torch and transformers are imported in main(): the tokenizer alone needs neither.

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "arcane" / "tests" / "fixtures"
COLUMN_STRIDE = 251
GREEDY_NEW_TOKENS = 12

EVAL_TEXT = (
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money "
    "in my purse, and nothing particular to interest me on shore, I thought I would sail about a "
    "little and see the watery part of the world. It is a way I have of driving off the spleen, "
    "and regulating the circulation. Whenever I find myself growing grim about the mouth; whenever "
    "it is a damp, drizzly November in my soul; whenever I find myself involuntarily pausing before "
    "coffin warehouses, and bringing up the rear of every funeral I meet; then, I account it high "
    "time to get to sea as soon as I can.\n"
)


TOKENIZER_STRINGS = ["Hello world", "Call me Ishmael.", "naïve café 😀", "  two  spaces\nand a line",
                     "The whale, the whale!", ""]


def make_llama_tokenizer(vocab_size=512):
    """A Llama-2-style tokenizer.json: ids 0-2 are <unk>, <s>, </s>; 3-258 the byte-fallback
    tokens <0x00>..<0xFF>; the rest BPE merges over "▁"-joined words learned from EVAL_TEXT.
    Returns the tokenizer and writes it as llama/tokenizer.json."""
    from tokenizers import Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Learn merges over the normalized text, then build the final vocabulary around them.
    learner = Tokenizer(BPE())
    learner.normalizer = normalizer
    learner.train_from_iterator([EVAL_TEXT] * 4, BpeTrainer(
        vocab_size=vocab_size - len(specials) - len(byte_tokens), show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + byte_tokens)}
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                        fuse_unk=True))
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens(specials)
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    (FIXTURES / "llama").mkdir(parents=True, exist_ok=True)
    tok.save(str(FIXTURES / "llama" / "tokenizer.json"))
    reference = {
        text: {"ids": tok.encode(text).ids,
               "ids_no_special": tok.encode(text, add_special_tokens=False).ids,
               "decoded": tok.decode(tok.encode(text, add_special_tokens=False).ids)}
        for text in TOKENIZER_STRINGS
    }
    with open(FIXTURES / "tokenizer_reference.json", "w") as f:
        json.dump({"vocab_size": vocab_size, "strings": reference}, f, ensure_ascii=False, indent=1)
    return tok


def window_loss(model, ids, window):
    """Mean next-token cross-entropy with windows of `window` tokens, each starting with the
    last token of the previous one, so that every token after the first is predicted once."""
    total, count, start = 0.0, 0, 0
    while start + 1 < len(ids):
        chunk = ids[start:start + window]
        x = torch.tensor([chunk[:-1]])
        y = torch.tensor([chunk[1:]])
        with torch.no_grad():
            logits = model(x).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum")
        total += loss.item()
        count += len(chunk) - 1
        start += window - 1
    return total / count, count


def short(values):
    """Seven significant digits: far below the tests' 1e-4 tolerance, half the file size."""
    return [float(f"{v:.7g}") for v in values]


def train_briefly(model, ids, steps, window):
    """A few AdamW steps on random windows of `ids`, so the model has something to say."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(3)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - window, (4,), generator=g).tolist()
        x = torch.tensor([ids[s:s + window] for s in starts])
        y = torch.tensor([ids[s + 1:s + window + 1] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


def logits_record(model, sequences, full):
    out = []
    for seq in sequences:
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0].float()  # [T, V]
        rec = {
            "tokens": seq,
            "argmax": logits.argmax(-1).tolist(),
            "logsumexp": short(torch.logsumexp(logits, -1).tolist()),
        }
        if full:
            rec["logits"] = short(logits.flatten().tolist())
        else:
            rec["column_stride"] = COLUMN_STRIDE
            rec["logits"] = short(logits[:, ::COLUMN_STRIDE].flatten().tolist())
        out.append(rec)
    return out


def hellaswag_scores(model, tokenizer, path, window):
    """build-nanogpt's completion-style scoring, with contexts cut from the left to fit."""
    out = []
    for line in open(path):
        ex = json.loads(line)
        ctx = tokenizer(ex["ctx"])["input_ids"]
        sums, means = [], []
        for ending in ex["endings"]:
            end = tokenizer(" " + ending)["input_ids"]
            row = (ctx + end)[-window:]
            n_end = min(len(end), len(row) - 1)
            with torch.no_grad():
                logits = model(torch.tensor([row])).logits[0].float()
            losses = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(row[1:]), reduction="none")
            s = losses[len(row) - 1 - n_end:].sum().item()
            sums.append(s)
            means.append(s / n_end)
        out.append({"ind": ex["ind"], "label": ex["label"], "sum_losses": sums, "mean_losses": means,
                    "pred": min(range(4), key=lambda i: sums[i]),
                    "pred_norm": min(range(4), key=lambda i: means[i])})
    return out


def greedy(model, prompt, eos):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=GREEDY_NEW_TOKENS,
                             do_sample=False, eos_token_id=eos, pad_token_id=eos)
    return {"prompt": prompt, "ids": out[0, len(prompt):].tolist()}


def randomize_small_params(model, gemma_norm=False, scale=0.3, seed=5):
    """Norm gains and biases are ones and zeros at init: give them random values so that a norm
    formula or a missing bias shows in the logits. Gemma's gains are offsets from one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif "norm" in name:
                noise = torch.randn(p.shape, generator=g) * scale
                p.copy_(noise if gemma_norm else 1.0 + noise)


def edit_config(directory, **changes):
    """Rewrites keys of a saved config.json (None deletes one), to spell it as the Hub does."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def arch_models():
    """(name, model, config.json edits) of each further architecture, tiny and float32."""
    from transformers import (GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM,
                              MistralConfig, MistralForCausalLM, Phi3Config, Phi3ForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
    common = dict(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  max_position_embeddings=64, initializer_range=0.2, bos_token_id=1,
                  eos_token_id=2, pad_token_id=None)
    llama3_rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 32}
    specs = [
        ("qwen2", Qwen2ForCausalLM, Qwen2Config(
            **common, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
            tie_word_embeddings=True, use_sliding_window=False),
         # As Qwen2.5's files: a window that `use_sliding_window: false` switches off.
         {"sliding_window": 16}),
        ("qwen3", Qwen3ForCausalLM, Qwen3Config(
            **common, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
            tie_word_embeddings=False, attention_bias=False), {}),
        ("mistral", MistralForCausalLM, MistralConfig(
            **common, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
            tie_word_embeddings=False, sliding_window=5), {}),
        ("gemma", GemmaForCausalLM, GemmaConfig(
            **common, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
            rms_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0}),
         {"hidden_act": "gelu", "hidden_activation": None}),
        ("phi3", Phi3ForCausalLM, Phi3Config(
            **common, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
            original_max_position_embeddings=64, sliding_window=8,
            tie_word_embeddings=False), {}),
        ("llama3", LlamaForCausalLM, LlamaConfig(
            **common, num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-5,
            rope_parameters=dict(llama3_rope), tie_word_embeddings=True),
         {"rope_parameters": None, "rope_theta": 10000.0,
          "rope_scaling": {k: v for k, v in llama3_rope.items() if k != "rope_theta"},
          "dtype": None, "torch_dtype": "float32", "eos_token_id": [2, 3]}),
    ]
    for i, (name, cls, cfg, edits) in enumerate(specs):
        torch.manual_seed(10 + i)
        model = cls(cfg).eval()
        randomize_small_params(model, gemma_norm=(name == "gemma"), seed=20 + i)
        yield name, model, edits


def make_arch_fixtures():
    """Writes the further architectures' checkpoints and `reference_archs.json`."""
    reference = {}
    for name, model, edits in arch_models():
        g = torch.Generator().manual_seed(30)
        seqs = [torch.randint(0, 512, (12,), generator=g).tolist(),
                torch.randint(0, 512, (7,), generator=g).tolist()]
        records = []
        for rec in logits_record(model, seqs, full=True):
            v = 512
            rows = [rec["logits"][t * v:(t + 1) * v] for t in range(len(rec["tokens"]))]
            rec["column_stride"] = 2
            rec["logits"] = [x for row in rows for x in row[::2]]
            records.append(rec)
        reference[name] = {"class": type(model).__name__, "logits": records,
                           "greedy": greedy(model, seqs[1], 2)}
        out = FIXTURES / name
        if out.exists():
            shutil.rmtree(out)
        model.save_pretrained(out, safe_serialization=True)
        edit_config(out, **edits)
        shutil.copy(FIXTURES / "llama" / "tokenizer.json", out / "tokenizer.json")
        print(name, type(model).__name__, "greedy", reference[name]["greedy"]["ids"])
    with open(FIXTURES / "reference_archs.json", "w") as f:
        json.dump(reference, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-dir",
                    help="folder with GPT-2's encoder.json and vocab.bpe (tiktoken-rs assets)")
    ap.add_argument("--llama-tokenizer-only", action="store_true",
                    help="write only llama/tokenizer.json and tokenizer_reference.json")
    ap.add_argument("--archs", action="store_true",
                    help="write only the further architectures (qwen2, qwen3, mistral, gemma, "
                         "phi3, llama3) and reference_archs.json")
    args = ap.parse_args()
    global torch
    if args.archs:
        import torch
        make_arch_fixtures()
        return
    make_llama_tokenizer()
    if args.llama_tokenizer_only:
        return
    if not args.tokenizer_dir:
        ap.error("--tokenizer-dir is required")
    import torch
    from transformers import (GPT2Config, GPT2LMHeadModel, GPT2Tokenizer, LlamaConfig,
                              LlamaForCausalLM)
    tok_dir = pathlib.Path(args.tokenizer_dir)
    with tempfile.TemporaryDirectory() as tmp:
        # GPT-2's own vocab.json / merges.txt, under the names that transformers expects.
        shutil.copy(tok_dir / "encoder.json", pathlib.Path(tmp) / "vocab.json")
        shutil.copy(tok_dir / "vocab.bpe", pathlib.Path(tmp) / "merges.txt")
        tokenizer = GPT2Tokenizer.from_pretrained(tmp)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "eval.txt").write_text(EVAL_TEXT)
    eval_ids = tokenizer(EVAL_TEXT)["input_ids"]
    reference = {
        "tokenizer": {
            text: tokenizer(text)["input_ids"]
            for text in ["Hello world", "hello world", " The quick brown fox.", "naïve café 😀", EVAL_TEXT]
        }
    }

    # GPT-2: full vocabulary, tiny width, float16 weights.
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_positions=64, n_embd=8, n_layer=2, n_head=2,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, initializer_range=0.2, layer_norm_epsilon=1e-5)
    gpt2 = GPT2LMHeadModel(cfg)
    print("gpt2 trained to loss", train_briefly(gpt2, eval_ids, steps=150, window=32))
    with torch.no_grad():
        for p in gpt2.parameters():
            p.copy_(p.half().float())  # the values the float16 file will hold
    prompt = tokenizer("The meaning of life is")["input_ids"]
    reference["gpt2"] = {
        "logits": logits_record(gpt2, [prompt, eval_ids[:24]], full=False),
        "greedy": greedy(gpt2, prompt, 50256),
        "greedy_prompt_text": "The meaning of life is",
        "eval": dict(zip(["loss", "tokens"], window_loss(gpt2, eval_ids, 64)), window=64),
        "eval_window_16": dict(zip(["loss", "tokens"], window_loss(gpt2, eval_ids, 16)), window=16),
        "hellaswag": hellaswag_scores(gpt2, tokenizer, FIXTURES / "hellaswag.jsonl", 64),
    }
    gpt2.half().save_pretrained(FIXTURES / "gpt2", safe_serialization=True)

    # Llama: small vocabulary, GQA, untied, RoPE theta 1000, float32.
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=1000.0, tie_word_embeddings=False,
                      initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    llama = LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 512, (12,), generator=g).tolist(),
            torch.randint(0, 512, (7,), generator=g).tolist()]
    reference["llama"] = {
        "logits": logits_record(llama, seqs, full=True),
        "greedy": greedy(llama, seqs[1], 2),
    }
    llama.save_pretrained(FIXTURES / "llama", safe_serialization=True)

    with open(FIXTURES / "reference.json", "w") as f:
        json.dump(reference, f)
    for name in ["gpt2", "llama"]:
        print(name, "greedy", reference[name]["greedy"]["ids"])
    print("gpt2 eval", reference["gpt2"]["eval"], reference["gpt2"]["eval_window_16"])
    assert math.isfinite(reference["gpt2"]["eval"]["loss"])


if __name__ == "__main__":
    main()
