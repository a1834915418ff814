#!/usr/bin/python3
"""Dynamic int8 quantization of a float32 ONNX graph, as onnxruntime's `quantize_dynamic` does it.

    /usr/bin/python3 tools/quantize_onnx_int8.py IN.onnx OUT.onnx [--per-channel]

There is no onnxruntime for Python here, so this is the same rewrite written with `onnx` alone,
with quantize_dynamic's defaults (weight_type QInt8, per_channel False, reduce_range False,
symmetric int8 weights, MatMulConstBOnly):

  MatMul(X, W) with W a float initializer, and Gemm(A, B, C) with B one, become
      DynamicQuantizeLinear(X)                -> X_quantized (uint8), X_scale, X_zero_point
      MatMulInteger(X_quantized, W_quantized, X_zero_point, W_zero_point) -> int32
      Cast(to float) * (X_scale * W_scale)    (+ beta * C for Gemm)
    W_quantized = round(W / W_scale) in int8 [-127, 127], W_scale = max|W| / 127, zero point 0:
    one scale for the tensor, or with --per-channel one per output column.
    An activation feeding several MatMuls is quantized once.
  Gather(W, ids) with W a float initializer (the token embedding) becomes a Gather of the int8 W
    followed by DequantizeLinear, as quantize_dynamic's GatherQuant does.

Everything else (LayerNorm, attention's activation x activation products, softmax, GELU, biases)
stays float32. Float initializers left without a user are dropped.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def quantize_weight(w: np.ndarray, per_channel: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 in [-127, 127] with zero point 0; scale per tensor or per last-axis column."""
    w = w.astype(np.float32)
    if per_channel:
        absmax = np.maximum(np.abs(np.minimum(w.min(axis=0), 0)), np.maximum(w.max(axis=0), 0))
    else:
        absmax = np.float32(max(-min(float(w.min()), 0.0), max(float(w.max()), 0.0)))
    scale = (np.asarray(absmax, dtype=np.float32) * 2 / np.float32(254)).astype(np.float32)
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


class Rewriter:
    def __init__(self, model: onnx.ModelProto, per_channel: bool):
        self.model = model
        self.graph = model.graph
        self.per_channel = per_channel
        self.inits: Dict[str, TensorProto] = {t.name: t for t in self.graph.initializer}
        self.nodes: List[onnx.NodeProto] = []
        self.new_inits: List[TensorProto] = []
        self.activations: Dict[str, Tuple[str, str, str]] = {}
        self.weights: Dict[Tuple[str, bool], Tuple[str, str, str]] = {}
        self.counts = {"MatMul": 0, "Gemm": 0, "Gather": 0}

    def float_matrix(self, name: str) -> Optional[np.ndarray]:
        t = self.inits.get(name)
        if t is None or t.data_type != TensorProto.FLOAT or len(t.dims) != 2:
            return None
        return numpy_helper.to_array(t)

    def add_init(self, array: np.ndarray, name: str) -> str:
        self.new_inits.append(numpy_helper.from_array(array, name))
        return name

    def quantized_activation(self, x: str) -> Tuple[str, str, str]:
        if x not in self.activations:
            names = (f"{x}_quantized", f"{x}_scale", f"{x}_zero_point")
            self.nodes.append(helper.make_node("DynamicQuantizeLinear", [x], list(names), f"{x}_QuantizeLinear"))
            self.activations[x] = names
        return self.activations[x]

    def quantized_weight(self, name: str, w: np.ndarray, per_channel: bool) -> Tuple[str, str, str]:
        key = (name, per_channel)
        if key not in self.weights:
            q, scale = quantize_weight(w, per_channel)
            zp = np.zeros(scale.shape, dtype=np.int8)
            self.weights[key] = (self.add_init(q, f"{name}_quantized"), self.add_init(scale, f"{name}_scale"),
                                 self.add_init(zp, f"{name}_zero_point"))
        return self.weights[key]

    def integer_matmul(self, x: str, w_name: str, w: np.ndarray, out: str, tag: str) -> None:
        """out = X @ W through DynamicQuantizeLinear + MatMulInteger + Cast + Mul by the scales."""
        xq, xs, xz = self.quantized_activation(x)
        wq, ws, wz = self.quantized_weight(w_name, w, self.per_channel)
        self.nodes += [
            helper.make_node("MatMulInteger", [xq, wq, xz, wz], [f"{tag}_int32"], f"{tag}_quant"),
            helper.make_node("Cast", [f"{tag}_int32"], [f"{tag}_float"], f"{tag}_cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [xs, ws], [f"{tag}_scales"], f"{tag}_scales_mul"),
            helper.make_node("Mul", [f"{tag}_float", f"{tag}_scales"], [out], f"{tag}_output_scale_mul"),
        ]

    def matmul(self, node: onnx.NodeProto) -> bool:
        w = self.float_matrix(node.input[1])
        if w is None:
            return False
        self.integer_matmul(node.input[0], node.input[1], w, node.output[0], node.name or node.output[0])
        self.counts["MatMul"] += 1
        return True

    def gemm(self, node: onnx.NodeProto) -> bool:
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        w = self.float_matrix(node.input[1])
        if w is None:
            return False
        tag = node.name or node.output[0]
        x = node.input[0]
        if a.get("transA", 0):
            self.nodes.append(helper.make_node("Transpose", [x], [f"{tag}_A_t"], f"{tag}_A_transpose"))
            x = f"{tag}_A_t"
        w_name = node.input[1]
        if a.get("transB", 0):
            w, w_name = w.T.copy(), f"{w_name}_t"
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        if alpha != 1.0:  # fold alpha into the weight before quantizing: the same product
            w, w_name = w * np.float32(alpha), f"{w_name}_x{alpha:g}"
        has_c = len(node.input) > 2 and node.input[2] != ""
        y = f"{tag}_matmul" if has_c else node.output[0]
        self.integer_matmul(x, w_name, w, y, tag)
        if has_c:
            c = node.input[2]
            if beta != 1.0:
                self.nodes.append(helper.make_node("Mul", [c, self.add_init(np.float32(beta), f"{tag}_beta")],
                                                   [f"{tag}_C_beta"], f"{tag}_beta_mul"))
                c = f"{tag}_C_beta"
            self.nodes.append(helper.make_node("Add", [y, c], [node.output[0]], f"{tag}_bias_add"))
        self.counts["Gemm"] += 1
        return True

    def gather(self, node: onnx.NodeProto) -> bool:
        w = self.float_matrix(node.input[0])
        if w is None:
            return False
        tag = node.name or node.output[0]
        wq, ws, wz = self.quantized_weight(node.input[0], w, False)  # GatherQuant: per tensor
        self.nodes += [
            helper.make_node("Gather", [wq, node.input[1]], [f"{tag}_quantized"], f"{tag}_quant",
                             **{at.name: helper.get_attribute_value(at) for at in node.attribute}),
            helper.make_node("DequantizeLinear", [f"{tag}_quantized", ws, wz], [node.output[0]], f"{tag}_dequantize"),
        ]
        self.counts["Gather"] += 1
        return True

    def run(self) -> onnx.ModelProto:
        rewrite = {"MatMul": self.matmul, "Gemm": self.gemm, "Gather": self.gather}
        for node in self.graph.node:
            fn = rewrite.get(node.op_type)
            if fn is None or not fn(node):
                self.nodes.append(node)
        used = {i for n in self.nodes for i in n.input} | {o.name for o in self.graph.output}
        kept = [t for t in self.graph.initializer if t.name in used]
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept + self.new_inits)
        # MatMulInteger and DynamicQuantizeLinear are opset 10 and 11: any opset this graph has.
        return self.model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--per-channel", action="store_true", help="one weight scale per output column")
    a = ap.parse_args()
    if not os.path.isfile(a.input):
        sys.exit(f"quantize_onnx_int8: {a.input} not found")
    model = onnx.load(a.input)
    r = Rewriter(model, a.per_channel)
    r.run()
    if r.counts["MatMul"] + r.counts["Gemm"] == 0:
        sys.exit("quantize_onnx_int8: no MatMul or Gemm with a constant float weight to quantize")
    onnx.checker.check_model(model)
    tmp = f"{a.output}.{os.getpid()}.partial"
    onnx.save(model, tmp)
    os.replace(tmp, a.output)
    print(f"wrote {a.output} ({os.path.getsize(a.output) / 1e6:.1f} MB): "
          f"{r.counts['MatMul']} MatMul, {r.counts['Gemm']} Gemm, {r.counts['Gather']} Gather quantized"
          f" ({'per column' if a.per_channel else 'per tensor'})")


if __name__ == "__main__":
    main()
