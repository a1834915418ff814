#!/usr/bin/python3
"""Independent perplexity of a GPT-2 model on a text, for `npm run perplexity`'s known answer.

    /usr/bin/python3 tools/perplexity_reference.py --model test/models/tiny \
        --text test/fixtures/perplexity-text.txt --out test/fixtures/tiny-perplexity.json

The same windows as the engine's tool: the text's r50k_base ids (tools/tokenize_corpus.mjs) split
into consecutive windows of n_positions tokens (the last one shorter); each window is run from an
empty cache and every position but its first is scored by log p(next id). float64 throughout, on
the model's stored (F16/F32) weights, by full recomputation with tools/reference_gpt2.py.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_gpt2 import config_from_hf, full_logits, model_from_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tokenize(path: str) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ids.u16")
        subprocess.run(["node", os.path.join(ROOT, "tools/tokenize_corpus.mjs"), path, out], check=True, stdout=subprocess.DEVNULL)
        return np.fromfile(out, dtype="<u2").astype(np.int64).tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = config_from_hf(os.path.join(a.model, "config.json"))
    model = model_from_safetensors(os.path.join(a.model, "model.safetensors"), cfg)
    ids = tokenize(a.text)
    window = cfg.n_positions
    windows, total, scored = [], 0.0, 0
    for begin in range(0, len(ids), window):
        w = ids[begin:begin + window]
        if len(w) < 2:
            windows.append({"begin": begin, "length": len(w), "nll_sum": 0.0})
            continue
        logp = torch.log_softmax(full_logits(model, w), dim=-1)  # [T, V] float64
        nll = -float(sum(logp[t, w[t + 1]] for t in range(len(w) - 1)))
        windows.append({"begin": begin, "length": len(w), "nll_sum": nll})
        total += nll
        scored += len(w) - 1
    doc = {
        "model": os.path.relpath(a.model, ROOT),
        "text": os.path.relpath(a.text, ROOT),
        "window": window,
        "ids": ids,
        "tokens": scored,
        "nll": total / scored,
        "ppl": math.exp(total / scored),
        "windows": windows,
        "how": "float64 PyTorch (tools/reference_gpt2.py), full recomputation per window",
    }
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{scored} tokens scored in {len(windows)} windows: nll {doc['nll']:.6f}, ppl {doc['ppl']:.4f}")


if __name__ == "__main__":
    main()
