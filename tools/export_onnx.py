#!/usr/bin/python3
"""Export a GPT-2 model directory to an ONNX decoder with a KV cache, float32.

    /usr/bin/python3 tools/export_onnx.py MODEL_DIR OUT.onnx [--opset 17]

MODEL_DIR holds a Hugging Face GPT-2 `config.json` and `model.safetensors` (F32 / F16 / BF16,
keys with or without `transformer.`). The graph is the one transformers.js runs GPT-2 with
(onnxruntime-web): one graph serves prefill and decode.

  inputs   input_ids                 int64   [batch, T]
           past_key_values.{i}.key   float32 [batch, H, P, hd]   P may be 0 (prefill)
           past_key_values.{i}.value float32 [batch, H, P, hd]
  outputs  logits                    float32 [batch, T, vocab]
           present.{i}.key / .value  float32 [batch, H, P + T, hd]

Positions are P .. P+T-1, taken from the past's length inside the graph; there is no
attention_mask input (one sequence, no padding). The forward pass is tools/reference_gpt2.py's
GPT2, traced as it is: nothing here re-implements the model.

Checks after writing: onnx.checker, and the graph's inputs and outputs. Running it is done in
Node with onnxruntime-web (bench/peer-ort.ts), there being no onnxruntime for Python here.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_gpt2 import GPT2, config_from_hf, model_from_safetensors  # noqa: E402


class KVDecoder(torch.nn.Module):
    """GPT2 with the past as flat positional tensors, as torch.onnx wants inputs."""

    def __init__(self, model: GPT2):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *past_flat: torch.Tensor):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        logits, presents = self.model(input_ids, past)
        return (logits, *[t for kv in presents for t in kv])


def names(n_layer: int):
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    return past, present


def export(model_dir: str, out_path: str, opset: int) -> None:
    cfg = config_from_hf(os.path.join(model_dir, "config.json"))
    model = model_from_safetensors(os.path.join(model_dir, "model.safetensors"), cfg, dtype=torch.float32)
    H, hd = cfg.n_head, cfg.head_dim
    # Trace with a non-empty past and T > 1 so neither length is baked in as a constant.
    T, P = 2, 3
    ids = torch.zeros(1, T, dtype=torch.long)
    past = [torch.zeros(1, H, P, hd) for _ in range(2 * cfg.n_layer)]
    past_names, present_names = names(cfg.n_layer)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    axes.update({n: {0: "batch", 2: "past_sequence"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total_sequence"} for n in present_names})
    tmp = f"{out_path}.{os.getpid()}.partial"  # two exports at once never share a file
    with torch.no_grad(), warnings.catch_warnings():
        # The reference's length assert becomes a constant in the trace: harmless, and noisy.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            KVDecoder(model).eval(), (ids, *past), tmp,
            input_names=["input_ids", *past_names], output_names=["logits", *present_names],
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
        )
    name_vocab_axis(tmp, cfg.vocab_size)
    check(tmp, cfg.n_layer)
    os.replace(tmp, out_path)  # a killed export never leaves a file that looks finished


def name_vocab_axis(path: str, vocab: int) -> None:
    """The trace leaves the logits' last axis symbolic (a reshape by -1); it is the vocabulary."""
    import onnx
    m = onnx.load(path)
    m.graph.output[0].type.tensor_type.shape.dim[2].dim_value = vocab
    onnx.save(m, path)


def check(path: str, n_layer: int) -> None:
    import onnx
    onnx.checker.check_model(path)
    g = onnx.load(path, load_external_data=False).graph
    past_names, present_names = names(n_layer)
    inputs = [i.name for i in g.input]
    outputs = [o.name for o in g.output]
    assert inputs == ["input_ids", *past_names], inputs
    assert outputs == ["logits", *present_names], outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--opset", type=int, default=17)
    a = ap.parse_args()
    for f in ("config.json", "model.safetensors"):
        if not os.path.isfile(os.path.join(a.model_dir, f)):
            sys.exit(f"export_onnx: {os.path.join(a.model_dir, f)} not found")
    export(a.model_dir, a.out, a.opset)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
