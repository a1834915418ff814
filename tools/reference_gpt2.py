#!/usr/bin/python3
"""Independent reference GPT-2 forward pass in plain PyTorch.

Written from the GPT-2 paper ("Language Models are Unsupervised Multitask
Learners", Radford et al. 2019) / GPT-1 architecture, NOT ported from the
TypeScript engine. Uses Hugging Face GPT-2 parameter names and the HF
Conv1D layout (weights stored [in, out], applied as x @ W + b), so the
state_dict() of `GPT2` is directly a Hugging Face `GPT2Model` checkpoint
(without the "transformer." prefix).

Architecture (pre-LayerNorm transformer decoder):
    x = wte[ids] + wpe[positions]
    for each block:
        x = x + c_proj(causal_self_attention(ln_1(x)))
        x = x + mlp_c_proj(gelu_tanh(mlp_c_fc(ln_2(x))))
    logits = ln_f(x) @ wte^T                      (tied output embedding)

Also contains:
  * a KV-cache forward (prefill a prompt, then feed one token at a time),
  * hand-written safetensors writer/reader (no `safetensors` package),
  * helpers used by make_test_model.py / train_shakespeare.py to produce
    known-answer logit fixtures.

Run directly (`/usr/bin/python3 tools/reference_gpt2.py`) for a self-test:
it checks KV-cache decoding against full recomputation and a safetensors
round trip.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, asdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------
@dataclass
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # used for embd/attn/resid dropout during training

    @property
    def head_dim(self) -> int:
        assert self.n_embd % self.n_head == 0
        return self.n_embd // self.n_head

    def hf_config(self, dropout: float = 0.1, extra: Optional[dict] = None) -> dict:
        """Hugging Face GPT-2 config.json contents."""
        cfg = {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": None,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "resid_pdrop": dropout,
            "embd_pdrop": dropout,
            "attn_pdrop": dropout,
            "initializer_range": 0.02,
            "scale_attn_weights": True,
            "use_cache": True,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "tie_word_embeddings": True,
            "torch_dtype": "float16",
        }
        if extra:
            cfg.update(extra)
        return cfg


# --------------------------------------------------------------------------
# Matrix-product primitives. The defaults are the plain definitions; the
# training script swaps in mathematically identical oneDNN-backed versions
# (Debian's torch links the slow reference BLAS). Fixtures always use these.
# --------------------------------------------------------------------------
class Ops:
    @staticmethod
    def linear(x, W, b):  # x [..., in] @ W [in, out] + b [out]
        return x @ W + b

    @staticmethod
    def head(x, wte):  # x [N, d] @ wte^T -> [N, V]
        return x @ wte.t()

    @staticmethod
    def qk(q, k):  # [G, T, hd] x [G, S, hd] -> [G, T, S]
        return q @ k.transpose(-1, -2)

    @staticmethod
    def pv(p, v):  # [G, T, S] x [G, S, hd] -> [G, T, hd]
        return p @ v


OPS = Ops()


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
class Conv1D(nn.Module):
    """HF-style linear layer: weight [in, out], y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return OPS.linear(x, self.weight, self.bias)


class LayerNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.eps = eps
        self.n = n  # a Python int, so a traced export (tools/export_onnx.py) sees a constant shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.n,), self.weight, self.bias, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,  # [B, T, d]
        past: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,  # k,v [B, H, P, hd]
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        B, T, d = x.shape
        H, hd = self.n_head, self.head_dim
        qkv = self.c_attn(x)  # [B, T, 3d], columns q | k | v
        q, k, v = qkv.split(d, dim=-1)
        # head h uses columns h*hd:(h+1)*hd within each of q, k, v
        q = q.view(B, T, H, hd).transpose(1, 2)  # [B, H, T, hd]
        k = k.view(B, T, H, hd).transpose(1, 2)
        v = v.view(B, T, H, hd).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        P = k.shape[2] - T  # number of cached positions before these T tokens
        S = P + T
        scores = OPS.qk(q.reshape(B * H, T, hd), k.reshape(B * H, S, hd)).view(B, H, T, S)
        scores = scores / math.sqrt(hd)  # [B, H, T, P+T]
        # query i (absolute position P+i) may attend to keys j <= P+i
        qpos = torch.arange(T, device=x.device).unsqueeze(1) + P
        kpos = torch.arange(P + T, device=x.device).unsqueeze(0)
        future = kpos > qpos  # [T, P+T]
        scores = scores.masked_fill(future, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        probs = self.attn_drop(probs)
        y = OPS.pv(probs.reshape(B * H, T, S), v.reshape(B * H, S, hd)).view(B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, d)  # concat heads
        y = self.resid_drop(self.c_proj(y))
        return y, (k, v)


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2(nn.Module):
    """GPT-2 LM with tied embeddings. state_dict keys == HF GPT2Model keys."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon)

    def gpt2_init(self, generator: Optional[torch.Generator] = None):
        """GPT-2 paper init: N(0, 0.02), residual projections scaled by 1/sqrt(2*n_layer)."""
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            else:
                s = std
                if name.endswith("c_proj.weight"):
                    s = std / math.sqrt(2 * self.cfg.n_layer)
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=generator) * s)

    def forward(
        self,
        ids: torch.Tensor,  # [B, T] int64
        past: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None,
        last_only: bool = False,
    ):
        """Returns (logits [B, T, V], presents). With `past`, ids are the
        tokens following the cached ones (positions continue from the cache).
        last_only: only compute logits of the last position ([B, 1, V])."""
        B, T = ids.shape
        start = 0 if past is None else past[0][0].shape[2]
        assert start + T <= self.cfg.n_positions, "sequence longer than n_positions"
        pos = torch.arange(start, start + T, device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(pos).unsqueeze(0))
        presents = []
        for i, block in enumerate(self.h):
            x, pr = block(x, None if past is None else past[i])
            presents.append(pr)
        if last_only:
            x = x[:, -1:]
        x = self.ln_f(x)
        Bx, Tx, _ = x.shape
        logits = OPS.head(x.reshape(Bx * Tx, -1), self.wte.weight).view(Bx, Tx, -1)
        return logits, presents

    # -- convenience -------------------------------------------------------
    def hf_state_dict(self, with_attn_bias: bool = False) -> Dict[str, torch.Tensor]:
        sd = {k: v.detach() for k, v in self.state_dict().items()}
        if with_attn_bias:
            P = self.cfg.n_positions
            mask = torch.tril(torch.ones(P, P)).view(1, 1, P, P)
            for i in range(self.cfg.n_layer):
                sd[f"h.{i}.attn.bias"] = mask
        return sd

    def load_hf_state_dict(self, sd: Dict[str, torch.Tensor]):
        own = self.state_dict()
        stripped = {}
        for k, v in sd.items():
            k2 = k[len("transformer."):] if k.startswith("transformer.") else k
            if k2.endswith(".attn.bias") or k2.endswith(".attn.masked_bias") or k2 == "lm_head.weight":
                continue  # buffers / tied head: ignored
            stripped[k2] = v
        missing = set(own) - set(stripped)
        unexpected = set(stripped) - set(own)
        assert not missing and not unexpected, (missing, unexpected)
        self.load_state_dict({k: v.to(own[k].dtype) for k, v in stripped.items()})


# --------------------------------------------------------------------------
# safetensors by hand
# --------------------------------------------------------------------------
_DT = {"F16": (np.float16, 2), "F32": (np.float32, 4), "F64": (np.float64, 8)}


def save_safetensors(path: str, tensors: Dict[str, torch.Tensor], dtype: str = "F16",
                     dtypes: Optional[Dict[str, str]] = None, metadata: Optional[dict] = None):
    """Write a safetensors file: u64-LE header length, JSON header (space padded
    to a multiple of 8), then raw little-endian tensor bytes in header order."""
    header = {"__metadata__": {"format": "pt", **(metadata or {})}}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt = (dtypes or {}).get(name, dtype)
        npdt, _ = _DT[dt]
        arr = tensors[name].detach().cpu().to(torch.float64).numpy().astype(npdt)
        b = np.ascontiguousarray(arr).astype(np.dtype(npdt).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Read a safetensors file into float tensors (kept in the stored dtype; BF16 as float32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        if info["dtype"] == "BF16":
            # bfloat16 is the top half of a float32: widen the bits, exactly.
            bits = np.frombuffer(data, dtype="<u2", count=(e - b) // 2, offset=base + b).astype(np.uint32) << 16
            out[name] = torch.from_numpy(bits.view(np.float32).reshape(info["shape"]).copy())
            continue
        npdt, _ = _DT[info["dtype"]]
        arr = np.frombuffer(data, dtype=np.dtype(npdt).newbyteorder("<"), count=(e - b) // np.dtype(npdt).itemsize,
                            offset=base + b).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.astype(npdt).copy())
    return out, meta


def f16_round(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float16).to(torch.float64) for k, v in sd.items()}


def model_from_safetensors(path: str, cfg: GPT2Config, dtype=torch.float64) -> GPT2:
    sd, _ = load_safetensors(path)
    m = GPT2(GPT2Config(**{**asdict(cfg), "dropout": 0.0})).to(dtype)
    m.load_hf_state_dict({k: v.to(dtype) for k, v in sd.items()})
    m.eval()
    return m


def config_from_hf(path: str) -> GPT2Config:
    with open(path) as f:
        c = json.load(f)
    return GPT2Config(vocab_size=c["vocab_size"], n_positions=c["n_positions"], n_embd=c["n_embd"],
                      n_layer=c["n_layer"], n_head=c["n_head"], layer_norm_epsilon=c["layer_norm_epsilon"])


# --------------------------------------------------------------------------
# Inference helpers
# --------------------------------------------------------------------------
@torch.no_grad()
def full_logits(model: GPT2, ids: List[int], last_only: bool = False) -> torch.Tensor:
    """Logits for every position of `ids` by full recomputation: [T, V]."""
    logits, _ = model(torch.tensor([ids], dtype=torch.long), last_only=last_only)
    return logits[0]


@torch.no_grad()
def greedy_full(model: GPT2, prompt: List[int], n: int) -> Tuple[List[int], List[float], List[torch.Tensor]]:
    """Greedy decoding by full recompute (no cache). Returns (ids, top1-top2 gaps,
    last-position logits of each step)."""
    seq = list(prompt)
    out, gaps, steps = [], [], []
    for _ in range(n):
        lg = full_logits(model, seq, last_only=True)[-1]
        top2 = torch.topk(lg, 2)
        tok = int(top2.indices[0])
        gaps.append(float(top2.values[0] - top2.values[1]))
        steps.append(lg.clone())
        out.append(tok)
        seq.append(tok)
    return out, gaps, steps


@torch.no_grad()
def cached_decode(model: GPT2, prompt: List[int], feed: List[int]) -> List[torch.Tensor]:
    """Prefill `prompt` with a KV cache, then feed `feed` one token at a time.
    Returns [prefill last-position logits, logits after feed[0], ...]."""
    logits, past = model(torch.tensor([prompt], dtype=torch.long))
    res = [logits[0, -1].clone()]
    for t in feed:
        logits, past = model(torch.tensor([[t]], dtype=torch.long), past)
        res.append(logits[0, -1].clone())
    return res


def make_logit_fixture(model: GPT2, cases: List[Tuple[str, List[int]]], model_dir: str,
                       json_path: str, f32_path: str, n_decode: int = 8, n_greedy: int = 20,
                       extra: Optional[dict] = None) -> dict:
    """Known-answer logits. Stored values come from FULL recomputation (float64
    model); the KV-cache path is asserted to agree."""
    import os
    V = model.cfg.vocab_size
    chunks: List[np.ndarray] = []
    offset = 0
    out_cases = []
    for name, prompt in cases:
        assert len(prompt) + n_greedy <= model.cfg.n_positions
        greedy, gaps, _ = greedy_full(model, prompt, n_greedy)
        feed = greedy[:n_decode]
        # full-recompute logits at every position of prompt+feed
        allp = full_logits(model, prompt + feed)
        cached = cached_decode(model, prompt, feed)
        ref_rows = [allp[len(prompt) - 1 + k] for k in range(n_decode + 1)]
        for a, b in zip(ref_rows, cached):
            err = float((a - b).abs().max())
            assert err < 1e-9 * max(1.0, float(a.abs().max())), f"KV cache mismatch {name}: {err}"
        rec = {"name": name, "prompt_ids": list(map(int, prompt))}
        rec["prefill"] = {"position": len(prompt) - 1, "offset": offset}
        chunks.append(ref_rows[0].numpy().astype("<f4"))
        offset += V
        dec = []
        for k in range(n_decode):
            dec.append({"input_id": int(feed[k]), "position": len(prompt) + k, "offset": offset})
            chunks.append(ref_rows[k + 1].numpy().astype("<f4"))
            offset += V
        rec["decode"] = dec
        rec["greedy_ids"] = greedy
        rec["min_greedy_gap"] = min(gaps)
        out_cases.append(rec)
    blob = np.concatenate(chunks).astype("<f4")
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    blob.tofile(f32_path)
    doc = {"model": model_dir, "vocab_size": V, "dtype": "float32-le",
           "data": os.path.basename(f32_path)}
    if extra:
        doc.update(extra)
    doc["cases"] = out_cases
    with open(json_path, "w") as f:
        f.write(dumps_compact(doc))
    return doc


def dumps_compact(doc) -> str:
    """json.dumps(indent=1) but with lists of numbers kept on one line."""
    import re
    s = json.dumps(doc, indent=1)
    s = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", s)
    return s + "\n"


# --------------------------------------------------------------------------
# Self test
# --------------------------------------------------------------------------
def _self_test():
    import tempfile, os
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    cfg = GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    m = GPT2(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "weight" in n and "ln" not in n else 0.05)
                    + (1.0 if ".ln_" in n or n.startswith("ln_") else 0.0) * (n.endswith("weight")))
    m = m.double().eval()
    prompt = [int(x) for x in torch.randint(0, 97, (7,), generator=g)]
    greedy, gaps, steps = greedy_full(m, prompt, 10)
    cached = cached_decode(m, prompt, greedy[:9])
    for k in range(10):
        err = float((steps[k] - cached[k]).abs().max())
        assert err < 1e-10, err
    # causal check: logits at position t must not depend on later tokens
    a = full_logits(m, prompt + [1, 2, 3])
    b = full_logits(m, prompt + [4, 5, 6])
    assert torch.allclose(a[: len(prompt)], b[: len(prompt)], atol=1e-12, rtol=0)
    assert not torch.allclose(a[len(prompt)], b[len(prompt)])
    # manual check of one attention against an explicit loop implementation
    x = torch.randn(1, 5, 32, generator=g, dtype=torch.float64)
    att = m.h[0].attn
    y, _ = att(x)
    W, bb = att.c_attn.weight, att.c_attn.bias
    qkv = x[0] @ W + bb
    heads = []
    for h in range(4):
        q = qkv[:, h * 8:(h + 1) * 8]
        k = qkv[:, 32 + h * 8:32 + (h + 1) * 8]
        v = qkv[:, 64 + h * 8:64 + (h + 1) * 8]
        rows = []
        for i in range(5):
            s = torch.stack([q[i] @ k[j] / math.sqrt(8) for j in range(i + 1)])
            p = torch.exp(s - s.max()); p = p / p.sum()
            rows.append(sum(p[j] * v[j] for j in range(i + 1)))
        heads.append(torch.stack(rows))
    y2 = torch.cat(heads, -1) @ att.c_proj.weight + att.c_proj.bias
    assert torch.allclose(y[0], y2, atol=1e-12), float((y[0] - y2).abs().max())
    # safetensors round trip (F16 + F32)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.safetensors")
        sd = m.hf_state_dict(with_attn_bias=True)
        save_safetensors(p, sd, "F16", dtypes={"wpe.weight": "F32"})
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
        assert n % 8 == 0
        sd2, meta = load_safetensors(p)
        assert meta["format"] == "pt"
        assert sd2["wpe.weight"].dtype == torch.float32 and sd2["wte.weight"].dtype == torch.float16
        for k in sd:
            assert torch.equal(sd2[k].double(), sd[k].to(sd2[k].dtype).double()), k
        # BF16: a tensor whose float32 values have zero low halves reads back exactly
        x32 = (torch.randn(3, 5, generator=g).float().numpy().view(np.uint32) & 0xFFFF0000).view(np.float32)
        hb = json.dumps({"x": {"dtype": "BF16", "shape": [3, 5], "data_offsets": [0, 30]}}).encode()
        pb = os.path.join(d, "bf16.safetensors")
        with open(pb, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + (x32.view(np.uint32) >> 16).astype("<u2").tobytes())
        assert torch.equal(load_safetensors(pb)[0]["x"], torch.from_numpy(x32))
        m2 = model_from_safetensors(p, cfg)
        r = f16_round(m.state_dict())
        r["wpe.weight"] = m.state_dict()["wpe.weight"].float().double()
        m3 = GPT2(cfg).double().eval(); m3.load_state_dict(r)
        assert torch.equal(full_logits(m2, prompt), full_logits(m3, prompt))
    print("reference_gpt2 self-test OK (KV cache == full recompute, causal, attention loop, safetensors incl. BF16)")


if __name__ == "__main__":
    _self_test()
