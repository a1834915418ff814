#!/usr/bin/python3
"""Build the tiny random GPT-2 test model and its known-answer logit fixtures.

    /usr/bin/python3 tools/make_test_model.py

Deterministic (seeded torch.Generator). Writes
    test/models/tiny/model.safetensors   F16, HF GPT-2 key names, incl. h.{i}.attn.bias buffers
    test/models/tiny/config.json         HF GPT-2 config
    test/fixtures/tiny-logits.json       fixture index (see reference_gpt2.make_logit_fixture)
    test/fixtures/tiny-logits.f32        little-endian float32 logits

Weights are random but scaled so the logits are well spread (logit std ~2.4)
and the top-1/top-2 gaps on the greedy paths are not razor thin: starting from
BASE_SEED, seeds are tried in order until every case's smallest greedy gap is
>= MIN_GAP (deterministic; the chosen seed is recorded in the fixture JSON).
Fixture logits are computed in float64 from the F16-rounded weights, by full
recomputation; the KV-cache path is asserted to match.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_gpt2 import (GPT2, GPT2Config, save_safetensors, load_safetensors, greedy_full,  # noqa: E402
                            make_logit_fixture, model_from_safetensors, f16_round, config_from_hf)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = "test/models/tiny"
BASE_SEED = 1337
MIN_GAP = 0.025
LONG_SEED = 4242

CFG = GPT2Config(vocab_size=50257, n_positions=128, n_embd=64, n_layer=2, n_head=4, layer_norm_epsilon=1e-5)


def cases():
    g = torch.Generator().manual_seed(LONG_SEED)
    long_ids = [int(x) for x in torch.randint(0, 50256, (100,), generator=g)]
    return [
        ("hello", [31373, 616, 1438, 318, 198]),  # "hello my name is\n"
        ("single", [50256]),  # <|endoftext|>
        ("long", long_ids),  # 100 seeded random ids; decoding reaches position 107
        ("mid", [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]),  # "The quick brown fox jumps over the lazy dog."
    ]


def random_weights(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    m = GPT2(CFG)
    d = CFG.n_embd

    def rn(shape, std, mean=0.0):
        return torch.randn(shape, generator=g) * std + mean

    sd = {}
    for name, p in m.state_dict().items():
        shp = tuple(p.shape)
        if name == "wte.weight":
            t = rn(shp, 0.3)
        elif name == "wpe.weight":
            t = rn(shp, 0.3)
        elif ".ln_" in name or name.startswith("ln_"):
            t = rn(shp, 0.1, 1.0) if name.endswith("weight") else rn(shp, 0.05)
        elif name.endswith("attn.c_attn.weight"):
            t = rn(shp, 1.5 / d ** 0.5)  # q.k/sqrt(hd) ~ N(0, ~2): peaky but not one-hot attention
        elif name.endswith("attn.c_attn.bias"):
            t = rn(shp, 0.05)
        elif name.endswith("attn.c_proj.weight"):
            t = rn(shp, 2.0 / d ** 0.5)
        elif name.endswith("mlp.c_fc.weight"):
            t = rn(shp, 1.0 / d ** 0.5)
        elif name.endswith("mlp.c_proj.weight"):
            t = rn(shp, 2.0 / (4 * d) ** 0.5)
        elif name.endswith("bias"):
            t = rn(shp, 0.03)
        else:
            raise KeyError(name)
        sd[name] = t.float()
    return sd


def f64_model(sd16: dict) -> GPT2:
    m = GPT2(CFG).double().eval()
    m.load_state_dict(f16_round(sd16))
    return m


def main():
    torch.set_num_threads(2)
    os.chdir(ROOT)
    cs = cases()
    seed = BASE_SEED
    while True:
        sd = random_weights(seed)
        m = f64_model(sd)
        gaps = {}
        for name, prompt in cs:
            _, g, _ = greedy_full(m, prompt, 20)
            gaps[name] = min(g)
        print(f"seed {seed}: min greedy gaps " + ", ".join(f"{k}={v:.4f}" for k, v in gaps.items()), flush=True)
        if min(gaps.values()) >= MIN_GAP:
            break
        seed += 1

    os.makedirs(MODEL_DIR, exist_ok=True)
    full = dict(sd)
    P = CFG.n_positions
    for i in range(CFG.n_layer):
        full[f"h.{i}.attn.bias"] = torch.tril(torch.ones(P, P)).view(1, 1, P, P)  # HF causal-mask buffer
    st_path = os.path.join(MODEL_DIR, "model.safetensors")
    save_safetensors(st_path, full, "F16")
    with open(os.path.join(MODEL_DIR, "config.json"), "w") as f:
        json.dump(CFG.hf_config(dropout=0.0), f, indent=2)
        f.write("\n")
    size = os.path.getsize(st_path)
    print(f"wrote {st_path}: {size} bytes ({size / 2**20:.2f} MiB)")
    assert size < 7 * 10**6

    # Reload exactly what the engine will read, and compute the fixtures from it.
    cfg2 = config_from_hf(os.path.join(MODEL_DIR, "config.json"))
    m = model_from_safetensors(st_path, cfg2, torch.float64)
    doc = make_logit_fixture(m, cs, MODEL_DIR, "test/fixtures/tiny-logits.json", "test/fixtures/tiny-logits.f32",
                             n_decode=8, n_greedy=20,
                             extra={"note": "float64 PyTorch reference (tools/reference_gpt2.py) from the F16 weights; "
                                            "logits by full recompute; prefill.offset/decode[].offset are float32 "
                                            "indices into the .f32 file, each block is vocab_size floats",
                                    "seed": seed})
    for c in doc["cases"]:
        print(f"case {c['name']:7s} prompt_len={len(c['prompt_ids']):3d} min_greedy_gap={c['min_greedy_gap']:.4f} "
              f"greedy={c['greedy_ids']}")
    print(f"smallest greedy gap overall: {min(c['min_greedy_gap'] for c in doc['cases']):.4f}")
    print(f"fixture .f32 size: {os.path.getsize('test/fixtures/tiny-logits.f32')} bytes")


if __name__ == "__main__":
    main()
