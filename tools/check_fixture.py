#!/usr/bin/python3
"""Cross-check a logits fixture with a second, numpy-only float32 GPT-2.

    /usr/bin/python3 tools/check_fixture.py test/fixtures/tiny-logits.json [more.json ...]

Parses the safetensors file with numpy only (no torch), runs GPT-2 in float32
with a KV cache (the way a real engine does), and compares against the
float64 logits stored in the fixture. Reports the max abs error (a realistic
float32 error budget for the TypeScript engine) and checks that the greedy
token ids agree. Exits non-zero on a mismatch.
"""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    hdr.pop("__metadata__", None)
    dt = {"F16": "<f2", "F32": "<f4"}
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=dt[v["dtype"]]).reshape(v["shape"]).astype(np.float32)
    return out


def ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x ** 3)))


class NpGPT2:
    def __init__(self, model_dir):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = read_st(os.path.join(model_dir, "model.safetensors"))
        self.L, self.H, self.d = self.cfg["n_layer"], self.cfg["n_head"], self.cfg["n_embd"]
        self.eps = np.float32(self.cfg["layer_norm_epsilon"])

    def step(self, ids, cache):
        """Feed `ids` (list) after the cached tokens. Returns last-position logits."""
        w, d, H = self.w, self.d, self.H
        hd = d // H
        start = 0 if not cache else cache[0][0].shape[1]
        T = len(ids)
        x = w["wte.weight"][ids] + w["wpe.weight"][start:start + T]
        for i in range(self.L):
            p = f"h.{i}."
            a = ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], self.eps)
            qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, j * d:(j + 1) * d].reshape(T, H, hd).transpose(1, 0, 2) for j in range(3))
            if len(cache) > i:
                k = np.concatenate([cache[i][0], k], 1)
                v = np.concatenate([cache[i][1], v], 1)
                cache[i] = (k, v)
            else:
                cache.append((k, v))
            s = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(hd))
            qp = np.arange(T)[:, None] + start
            kp = np.arange(start + T)[None, :]
            s = np.where(kp > qp, -np.inf, s)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            y = (s @ v).transpose(1, 0, 2).reshape(T, d)
            x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            m = ln(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], self.eps)
            x = x + gelu(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
                + w[p + "mlp.c_proj.bias"]
        x = ln(x[-1:], w["ln_f.weight"], w["ln_f.bias"], self.eps)
        return (x @ w["wte.weight"].T)[0]


def check(json_path):
    doc = json.load(open(json_path))
    V = doc["vocab_size"]
    blob = np.fromfile(os.path.join(os.path.dirname(json_path), doc["data"]), dtype="<f4")
    model = NpGPT2(os.path.join(ROOT, doc["model"]))
    ok = True
    for c in doc["cases"]:
        cache = []
        got = [model.step(c["prompt_ids"], cache)]
        for dstep in c["decode"]:
            got.append(model.step([dstep["input_id"]], cache))
        offs = [c["prefill"]["offset"]] + [s["offset"] for s in c["decode"]]
        errs = [float(np.abs(g - blob[o:o + V]).max()) for g, o in zip(got, offs)]
        argmax_ok = all(int(np.argmax(g)) == int(np.argmax(blob[o:o + V])) for g, o in zip(got, offs))
        # greedy continuation with the KV cache in float32
        cache = []
        lg = model.step(c["prompt_ids"], cache)
        greedy = []
        for _ in range(len(c["greedy_ids"])):
            t = int(np.argmax(lg))
            greedy.append(t)
            lg = model.step([t], cache)
        gmatch = greedy == c["greedy_ids"]
        dec_ok = all(c["decode"][k]["input_id"] == c["greedy_ids"][k] for k in range(len(c["decode"])))
        ok &= gmatch and argmax_ok and dec_ok and max(errs) < 1e-2
        print(f"{os.path.basename(json_path)} {c['name']:8s} max|f32-f64|={max(errs):.2e} "
              f"logit range=[{blob[offs[0]:offs[0] + V].min():.2f},{blob[offs[0]:offs[0] + V].max():.2f}] "
              f"greedy_match={gmatch} min_gap={c['min_greedy_gap']:.4f}")
    return ok


if __name__ == "__main__":
    paths = sys.argv[1:] or [os.path.join(ROOT, "test/fixtures/tiny-logits.json")]
    res = [check(p) for p in paths]
    print("OK" if all(res) else "MISMATCH")
    sys.exit(0 if all(res) else 1)
