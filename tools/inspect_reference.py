#!/usr/bin/python3
"""Independent capture of what the inspector shows, for `inspect(ids)`'s known answer.

    /usr/bin/python3 tools/inspect_reference.py --model test/models/tiny --out test/fixtures/tiny-inspect.json

For each case (token ids), in float64 on the model's stored weights, layer by layer:
  attention[layer][head][query][key]  softmax(q·kᵀ/√hd) with keys after the query at −∞ (so 0)
  top[position]                       the K most probable next ids with their probabilities
  next_prob[position]                 the probability of the id that actually follows (positions 0..T-2)
  lens[layer][position]               the top id if the residual stream after that layer went
                                      straight to the final LayerNorm and the unembedding
Written from the GPT-2 definition, not from the engine, so the two can be compared.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_gpt2 import config_from_hf, model_from_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_K = 10


def ids_of(text: str) -> list:
    out = subprocess.run(["node", os.path.join(ROOT, "tools/tokenize_corpus.mjs"), "--text", text], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@torch.no_grad()
def capture(model, ids: list) -> dict:
    cfg = model.cfg
    T, d, H, hd = len(ids), cfg.n_embd, cfg.n_head, cfg.n_embd // cfg.n_head
    wte = model.wte.weight  # [V, d]
    x = wte[ids] + model.wpe.weight[:T]  # the residual stream [T, d]
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # key j visible to query i iff j <= i
    attention, lens = [], []
    for block in model.h:
        h = F.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        qkv = h @ block.attn.c_attn.weight + block.attn.c_attn.bias  # [T, 3d]
        q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(T, H, hd).transpose(0, 1) for i in range(3))  # [H, T, hd]
        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)  # [H, T, T]
        pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        attention.append(pattern.tolist())
        heads = (pattern @ v).transpose(0, 1).reshape(T, d)  # [T, d], heads concatenated
        x = x + heads @ block.attn.c_proj.weight + block.attn.c_proj.bias
        h = F.layer_norm(x, (d,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        x = x + F.gelu(h @ block.mlp.c_fc.weight + block.mlp.c_fc.bias, approximate="tanh") @ block.mlp.c_proj.weight + block.mlp.c_proj.bias
        lens_logits = F.layer_norm(x, (d,), model.ln_f.weight, model.ln_f.bias, model.ln_f.eps) @ wte.t()
        lens.append(lens_logits.argmax(dim=-1).tolist())
    probs = torch.softmax(F.layer_norm(x, (d,), model.ln_f.weight, model.ln_f.bias, model.ln_f.eps) @ wte.t(), dim=-1)  # [T, V]
    top = torch.topk(probs, TOP_K, dim=-1)
    return {
        "ids": ids,
        "attention": attention,
        "top": [[[int(i), float(p)] for i, p in zip(top.indices[t].tolist(), top.values[t].tolist())] for t in range(T)],
        "next_prob": [float(probs[t, ids[t + 1]]) for t in range(T - 1)],
        "lens": lens,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", action="append", default=[], help="a case's text (repeatable)")
    a = ap.parse_args()
    cfg = config_from_hf(os.path.join(a.model, "config.json"))
    model = model_from_safetensors(os.path.join(a.model, "model.safetensors"), cfg)
    texts = a.text or ["hello my name is\n", "ROMEO:\nWhat light through yonder window breaks?\n\nJULIET:\n"]
    cases = [{"text": t, **capture(model, ids_of(t))} for t in texts]
    doc = {"model": os.path.relpath(a.model, ROOT), "top_k": TOP_K, "how": "float64 PyTorch from the GPT-2 definition (tools/inspect_reference.py)", "cases": cases}
    with open(a.out, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    for c in cases:
        print(f"{len(c['ids'])} tokens: top next {c['top'][-1][0]}, lens {[l[-1] for l in c['lens']]}")


if __name__ == "__main__":
    main()
