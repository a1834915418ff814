#!/usr/bin/python3
"""Train the bundled default model: a small GPT-2 on Tiny Shakespeare.

    /usr/bin/python3 tools/train_shakespeare.py            # full run (~20 min on 2 shared cores)
    /usr/bin/python3 tools/train_shakespeare.py --bench    # just time a few training steps

Deterministic (seeded; CPU, torch.set_num_threads(2)). Steps:
 1. Tokenize ../shared/corpus/tinyshakespeare.txt (relative to the repo root)
    with GPT-2 r50k_base via `node tools/tokenize_corpus.mjs` (cached in /tmp).
 2. First 90% of tokens = train, last 10% = validation.
 3. Train a GPT-2 (tools/reference_gpt2.py, with dropout) - 4 layers, 4 heads,
    n_embd 128, n_positions 256, full 50257 vocab, tied embeddings - with AdamW,
    linear warm-up + cosine decay, gradient clipping; evaluate on the validation
    set periodically and keep the best checkpoint.
 4. Export the best checkpoint as F16 safetensors + HF config to
    public/models/shakespeare/, metrics (val loss / perplexity of the exported F16
    model vs. an add-one-smoothed unigram baseline) to metrics.json.
 5. Write float64 known-answer logits to test/fixtures/shakespeare-logits.{json,f32}.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_gpt2  # noqa: E402
from reference_gpt2 import (GPT2, GPT2Config, save_safetensors, make_logit_fixture,  # noqa: E402
                            model_from_safetensors, config_from_hf)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.normpath(os.path.join(ROOT, "..", "shared", "corpus", "tinyshakespeare.txt"))
TOKENS = "/tmp/tinyshakespeare.r50k.u16"
OUT_DIR = "public/models/shakespeare"

SEED = 1234
CFG = GPT2Config(vocab_size=50257, n_positions=256, n_embd=128, n_layer=4, n_head=4,
                 layer_norm_epsilon=1e-5, dropout=0.1)
HP = dict(
    batch_size=8,          # sequences per step
    block_size=256,        # tokens per sequence (= n_positions)
    max_steps=480,         # 1.9 s/step on 2 idle cores, 3-5 s/step when the machine is shared (983k tokens, ~3.2 epochs)
    warmup_steps=40,
    lr=3e-3,
    min_lr=1e-4,
    weight_decay=0.1,
    betas=(0.9, 0.95),
    grad_clip=1.0,
    eval_every=80,
)
TIME_LIMIT_S = 32 * 60  # safety net on a busy machine: stop training early (recorded in metrics)
ROMEO = "ROMEO:\nWhat light through yonder window breaks?\n\nJULIET:\n"


class FastOps(reference_gpt2.Ops):
    """Same products as reference_gpt2.Ops, computed as 1x1 (grouped) convolutions so
    that they run on oneDNN. Debian's torch 1.13 links the generic reference BLAS
    (BLAS_INFO=generic, ~1.5 GFLOP/s), which makes plain matmul 10-20x slower."""

    @staticmethod
    def linear(x, W, b):
        shp = x.shape
        x2 = x.reshape(-1, shp[-1])  # [N, in]
        y = F.conv1d(x2.t().unsqueeze(0), W.t().unsqueeze(-1), b)[0].t()  # [N, out]
        return y.reshape(*shp[:-1], W.shape[1])

    @staticmethod
    def head(x, wte):
        # output channels = tokens, spatial = vocab -> contiguous [N, V]
        return F.conv1d(wte.t().unsqueeze(0), x.unsqueeze(-1))[0]

    @staticmethod
    def qk(q, k):
        G, T, hd = q.shape
        S = k.shape[1]
        inp = k.transpose(1, 2).reshape(1, G * hd, S)
        return F.conv1d(inp, q.reshape(G * T, hd, 1), groups=G).view(G, T, S)

    @staticmethod
    def pv(p, v):
        G, T, S = p.shape
        hd = v.shape[2]
        return F.conv1d(v.reshape(1, G * S, hd), p.reshape(G * T, S, 1), groups=G).view(G, T, hd)


def check_fast_ops():
    """FastOps must match the plain matmul definitions, values and gradients."""
    g = torch.Generator().manual_seed(0)
    ref, fast = reference_gpt2.Ops(), FastOps()
    cases = [("linear", [(2, 5, 7), (7, 3), (3,)]), ("head", [(6, 4), (11, 4)]),
             ("qk", [(3, 5, 4), (3, 6, 4)]), ("pv", [(3, 5, 6), (3, 6, 4)])]
    for name, shapes in cases:
        args = [torch.randn(s, generator=g) for s in shapes]
        outs, grads = [], []
        for ops in (ref, fast):
            a = [t.clone().requires_grad_() for t in args]
            o = getattr(ops, name)(*a)
            o.backward(torch.linspace(-1, 1, o.numel()).view(o.shape))
            outs.append(o.detach())
            grads.append([t.grad for t in a])
        assert outs[0].shape == outs[1].shape and torch.allclose(outs[0], outs[1], atol=1e-5), name
        for ga, gb in zip(*grads):
            assert torch.allclose(ga, gb, atol=1e-5), name


def node_tok(*args) -> str:
    return subprocess.run(["node", os.path.join(ROOT, "tools", "tokenize_corpus.mjs"), *args],
                          check=True, capture_output=True, text=True, cwd=ROOT).stdout


def load_tokens() -> np.ndarray:
    if not os.path.exists(TOKENS):
        n = node_tok(CORPUS, TOKENS).strip()
        print(f"tokenized {CORPUS}: {n} tokens -> {TOKENS}", flush=True)
    ids = np.fromfile(TOKENS, dtype="<u2").astype(np.int64)
    return ids


def val_windows(val: np.ndarray, T: int):
    """Non-overlapping windows: every val token except the first is predicted exactly once."""
    xs, ys = [], []
    for i in range(0, len(val) - 1, T):
        x = val[i:i + T]
        y = val[i + 1:i + T + 1]
        x = x[:len(y)]
        xs.append(torch.from_numpy(x))
        ys.append(torch.from_numpy(y))
    return xs, ys


@torch.no_grad()
def evaluate(model: GPT2, xs, ys, bs: int = 16) -> float:
    was = model.training
    model.eval()
    tot, n = 0.0, 0
    # group full-length windows into batches; the last (short) one alone
    full = [i for i in range(len(xs)) if len(xs[i]) == len(xs[0])]
    rest = [i for i in range(len(xs)) if len(xs[i]) != len(xs[0])]
    groups = [full[i:i + bs] for i in range(0, len(full), bs)] + [[i] for i in rest]
    for g in groups:
        x = torch.stack([xs[i] for i in g])
        y = torch.stack([ys[i] for i in g])
        logits, _ = model(x)
        tot += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).to(torch.float64)
                                     if logits.dtype == torch.float64 else logits.reshape(-1, logits.shape[-1]),
                                     y.reshape(-1), reduction="sum"))
        n += y.numel()
    model.train(was)
    return tot / n


def unigram_baseline(train: np.ndarray, targets: np.ndarray, V: int) -> float:
    counts = np.bincount(train, minlength=V).astype(np.float64)
    p = (counts + 1.0) / (counts.sum() + V)  # add-one (Laplace) smoothing over the full vocab
    return float(-np.log(p[targets]).mean())


def lr_at(step: int) -> float:
    if step < HP["warmup_steps"]:
        return HP["lr"] * (step + 1) / HP["warmup_steps"]
    t = (step - HP["warmup_steps"]) / max(1, HP["max_steps"] - HP["warmup_steps"])
    return HP["min_lr"] + 0.5 * (HP["lr"] - HP["min_lr"]) * (1 + math.cos(math.pi * min(1.0, t)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="store_true", help="time a few steps and exit")
    ap.add_argument("--steps", type=int, default=None, help="override max_steps (for testing only)")
    args = ap.parse_args()
    if args.steps:
        HP["max_steps"] = args.steps
        HP["eval_every"] = min(HP["eval_every"], args.steps)

    os.chdir(ROOT)
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    check_fast_ops()
    reference_gpt2.OPS = FastOps()  # training + validation evaluation only
    t_start = time.time()

    ids = load_tokens()
    n_train = int(len(ids) * 0.9)
    train, val = ids[:n_train], ids[n_train:]
    print(f"tokens: total {len(ids)}, train {len(train)}, val {len(val)}", flush=True)
    vx, vy = val_windows(val, HP["block_size"])
    val_targets = np.concatenate([y.numpy() for y in vy])
    base = unigram_baseline(train, val_targets, CFG.vocab_size)
    print(f"unigram baseline (add-one): loss {base:.4f}  ppl {math.exp(base):.1f}  "
          f"over {len(val_targets)} val targets", flush=True)

    gen = torch.Generator().manual_seed(SEED)
    model = GPT2(CFG)
    model.gpt2_init(gen)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params: {n_params} ({n_params - model.wte.weight.numel()} excluding wte)", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=HP["lr"], betas=HP["betas"], eps=1e-8)
    train_t = torch.from_numpy(train)
    B, T = HP["batch_size"], HP["block_size"]

    def batch():
        ix = torch.randint(0, len(train) - T - 1, (B,), generator=gen)
        x = torch.stack([train_t[i:i + T] for i in ix])
        y = torch.stack([train_t[i + 1:i + T + 1] for i in ix])
        return x, y

    def train_step(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = batch()
        logits, _ = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), HP["grad_clip"])
        opt.step()
        return float(loss), float(gn)

    if args.bench:
        for s in range(2):
            train_step(s)
        t0 = time.time()
        n = 5
        for s in range(n):
            train_step(s)
        dt = (time.time() - t0) / n
        t0 = time.time()
        v = evaluate(model, vx, vy)
        te = time.time() - t0
        print(f"bench: {dt:.3f} s/step (B={B}, T={T}, {B * T / dt:.0f} tok/s); eval {te:.1f} s (val loss {v:.3f})")
        return

    best = (float("inf"), -1, None)
    history = []
    t0 = time.time()
    stopped_early = None
    for step in range(HP["max_steps"]):
        if time.time() - t_start > TIME_LIMIT_S:
            stopped_early = step
            print(f"time limit reached: stopping at step {step}", flush=True)
            v = evaluate(model, vx, vy)
            history.append({"step": step, "val_loss": v, "train_loss": loss})
            if v < best[0]:
                best = (v, step, {k: t.detach().clone() for k, t in model.state_dict().items()})
            break
        loss, gn = train_step(step)
        if step % 20 == 0:
            el = time.time() - t0
            print(f"step {step:5d}  loss {loss:.4f}  gnorm {gn:.2f}  lr {lr_at(step):.2e}  "
                  f"{el:.0f}s ({el / (step + 1):.3f} s/step)", flush=True)
        if (step + 1) % HP["eval_every"] == 0 or step + 1 == HP["max_steps"]:
            v = evaluate(model, vx, vy)
            history.append({"step": step + 1, "val_loss": v, "train_loss": loss})
            mark = ""
            if v < best[0]:
                best = (v, step + 1, {k: t.detach().clone() for k, t in model.state_dict().items()})
                mark = "  * best"
            print(f"eval step {step + 1}: val loss {v:.4f} ppl {math.exp(v):.2f}{mark}  "
                  f"({time.time() - t0:.0f}s)", flush=True)
    train_time = time.time() - t0
    print(f"training done in {train_time:.0f}s; best val loss {best[0]:.4f} at step {best[1]}", flush=True)

    # ---- export -----------------------------------------------------------
    os.makedirs(OUT_DIR, exist_ok=True)
    st_path = os.path.join(OUT_DIR, "model.safetensors")
    save_safetensors(st_path, best[2], "F16", metadata={"source": "tools/train_shakespeare.py"})
    with open(os.path.join(OUT_DIR, "config.json"), "w") as f:
        json.dump(CFG.hf_config(dropout=CFG.dropout), f, indent=2)
        f.write("\n")
    size = os.path.getsize(st_path)
    print(f"wrote {st_path}: {size} bytes ({size / 2**20:.2f} MiB)", flush=True)
    assert size <= 16 * 2**20

    cfg = config_from_hf(os.path.join(OUT_DIR, "config.json"))
    m32 = model_from_safetensors(st_path, cfg, torch.float32)
    v16 = evaluate(m32, vx, vy)
    print(f"exported F16 model: val loss {v16:.4f} ppl {math.exp(v16):.2f}  "
          f"(baseline {base:.4f} / {math.exp(base):.1f})", flush=True)
    metrics = {
        "val_loss": round(v16, 5),
        "val_perplexity": round(math.exp(v16), 3),
        "baseline_loss": round(base, 5),
        "baseline_perplexity": round(math.exp(base), 3),
        "baseline": "unigram over the training tokens, add-one (Laplace) smoothing over 50257 tokens",
        "val_loss_fp32_checkpoint": round(best[0], 5),
        "best_step": best[1],
        "val_tokens_predicted": int(len(val_targets)),
        "eval": "mean next-token cross-entropy (nats) over non-overlapping 256-token windows of the last 10% "
                "of the r50k_base-tokenized corpus; exported F16 weights evaluated in float32",
        "train_tokens": int(len(train)),
        "val_tokens": int(len(val)),
        "tokenizer": "GPT-2 r50k_base (gpt-tokenizer, tools/tokenize_corpus.mjs)",
        "corpus": "tinyshakespeare.txt",
        "params": n_params,
        "hyperparameters": {**HP, "betas": list(HP["betas"]), "dropout": CFG.dropout, "seed": SEED},
        "train_time_seconds": round(train_time, 1),
        "stopped_early_at_step": stopped_early,
        "total_time_seconds": None,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in history],
    }

    # ---- fixtures (plain matmul reference ops, float64) -------------------
    reference_gpt2.OPS = reference_gpt2.Ops()
    romeo_ids = json.loads(node_tok("--text", ROMEO))
    m64 = model_from_safetensors(st_path, cfg, torch.float64)
    cases = [("eot", [50256]), ("hello", [31373, 616, 1438, 318, 198]), ("romeo", romeo_ids)]
    doc = make_logit_fixture(m64, cases, OUT_DIR, "test/fixtures/shakespeare-logits.json",
                             "test/fixtures/shakespeare-logits.f32", n_decode=8, n_greedy=20,
                             extra={"note": "float64 PyTorch reference (tools/reference_gpt2.py) from the F16 "
                                            "weights; logits by full recompute; offsets are float32 indices into "
                                            "the .f32 file, each block is vocab_size floats",
                                    "romeo_text": ROMEO})
    for c in doc["cases"]:
        text = node_tok("--decode", json.dumps(c["greedy_ids"]))
        print(f"case {c['name']:6s} min_greedy_gap={c['min_greedy_gap']:.4f} greedy: {text!r}", flush=True)
    metrics["min_greedy_gaps"] = {c["name"]: round(c["min_greedy_gap"], 5) for c in doc["cases"]}
    metrics["total_time_seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(OUT_DIR, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    print(json.dumps({k: metrics[k] for k in ["val_loss", "val_perplexity", "baseline_loss",
                                               "baseline_perplexity", "train_time_seconds",
                                               "total_time_seconds"]}), flush=True)


if __name__ == "__main__":
    main()
