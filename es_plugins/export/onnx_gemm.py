"""Rewrite ``MatMul(x, W) [+ bias]`` into ``Gemm`` so 2:4 layers become eligible for TensorRT's
sparse kernels (it runs MatMul dense).

Gemm takes 2-D inputs, so activations ``[..., K]`` are flattened to ``[-1, K]`` and the
result reshaped back to ``[..., N]`` with the leading dims read from ``Shape(x)`` at run
time. The weight is stored as ``[N, K]`` (PyTorch's layout, ``transB=1``), so the 2:4 groups
lie along the contiguous axis. The arithmetic is the same product and sum; callers check
the outputs against the original graph (:func:`rewrite_and_check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ExportError
from .onnx_check import OutputCheck, compare_outputs
from .onnx_report import inspect_onnx
from .onnx_weights import constant_sources

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class GemmRewrite:
    model: "onnx.ModelProto"
    rewritten: tuple[str, ...]  # PyTorch names of the layers now run by Gemm
    with_bias: int
    check: OutputCheck | None = None  # set by rewrite_and_check

    @property
    def max_abs_diff(self) -> float:
        """Largest output difference of the checked rewrite (0.0 when it was not checked)."""
        return self.check.max_abs_diff if self.check is not None else 0.0


def _opset(model: "onnx.ModelProto") -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def matmul_to_gemm(model: "onnx.ModelProto", pattern: tuple[int, int] | None = (2, 4)) -> GemmRewrite:
    """Return a rewritten copy of ``model``; with ``pattern`` only N:M-compliant weights move.

    A following ``Add`` of a 1-D constant bias is folded into the Gemm when the MatMul
    output has no other consumer.
    """
    import onnx
    from onnx import helper, numpy_helper

    if _opset(model) < 11:
        raise ExportError(f"the MatMul->Gemm rewrite needs opset >= 11, the model has {_opset(model)}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    report = inspect_onnx(model, pattern=pattern or (2, 4))
    via_identity = constant_sources(model)
    chosen = {
        layer.initializer: layer
        for layer in report.layers
        if layer.op_type == "MatMul" and (pattern is None or layer.nm_ok)
    }
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    constants: dict[str, onnx.TensorProto] = {}

    def const(name: str, values: list[int]) -> str:
        if name not in constants:
            constants[name] = numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)
        return name

    new_nodes, dropped, rewritten, with_bias = [], set(), [], 0
    for node in graph.node:
        if id(node) in dropped:
            continue
        source = via_identity.get(node.input[1], node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "MatMul" or source not in chosen:
            new_nodes.append(node)
            continue
        layer = chosen[source]
        k, n = layer.shape
        x, y = node.input[0], node.output[0]
        bias, out = None, y
        users = consumers.get(y, [])
        if len(users) == 1 and users[0].op_type == "Add" and y not in graph_outputs:
            add = users[0]
            other = add.input[1] if add.input[0] == y else add.input[0]
            other = via_identity.get(other, other)
            if other in inits and tuple(inits[other].dims) == (n,):
                bias, out = other, add.output[0]
                dropped.add(id(add))
                with_bias += 1
        weight_name = f"{layer.pytorch_name}__gemm" if layer.pytorch_name in inits else layer.pytorch_name
        transposed = numpy_helper.to_array(inits[source]).T.copy()
        graph.initializer.append(numpy_helper.from_array(transposed, weight_name))
        p = node.name or y
        new_nodes += [
            helper.make_node("Shape", [x], [f"{p}/gemm_shape"], name=f"{p}/GemmShape"),
            helper.make_node(
                "Slice",
                [f"{p}/gemm_shape", const("es_plugins::zero", [0]), const("es_plugins::minus_one", [-1])],
                [f"{p}/gemm_lead"],
                name=f"{p}/GemmLead",
            ),
            helper.make_node(
                "Concat",
                [f"{p}/gemm_lead", const(f"es_plugins::dim_{n}", [n])],
                [f"{p}/gemm_out_shape"],
                axis=0,
                name=f"{p}/GemmOutShape",
            ),
            helper.make_node(
                "Reshape", [x, const(f"es_plugins::rows_{k}", [-1, k])], [f"{p}/gemm_in"], name=f"{p}/GemmFlatten"
            ),
            helper.make_node(
                "Gemm",
                [f"{p}/gemm_in", weight_name] + ([bias] if bias else []),
                [f"{p}/gemm_y"],
                transB=1,
                name=f"{p}/Gemm",
            ),
            helper.make_node("Reshape", [f"{p}/gemm_y", f"{p}/gemm_out_shape"], [out], name=f"{p}/GemmUnflatten"),
        ]
        rewritten.append(layer.pytorch_name)
    del graph.node[:]
    graph.node.extend(new_nodes)
    still_used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in still_used or t.name in graph_outputs]
    del graph.initializer[:]
    graph.initializer.extend(kept + list(constants.values()))
    return GemmRewrite(model, tuple(rewritten), with_bias)


def rewrite_and_check(
    model: "onnx.ModelProto", pattern: tuple[int, int] | None = (2, 4), atol: float = 1e-5
) -> GemmRewrite:
    """:func:`matmul_to_gemm`, then run both graphs on the same inputs; refuse if outputs differ."""
    result = matmul_to_gemm(model, pattern)
    check = compare_outputs(model, result.model, atol=atol)
    if not check.ok:
        raise ExportError(
            f"MatMul->Gemm rewrite changed the outputs (max |diff| {check.max_abs_diff:.3g} > {atol}); not writing it"
        )
    return GemmRewrite(result.model, result.rewritten, result.with_bias, check)
