"""The ONNX sparsity inspector: what survived export, and what a sparse engine can use.

For each weight it reports zeros and N:M compliance along the axis sparse tensor cores
group (the reduction axis of the stored tensor), and whether TensorRT can pick a 2:4 sparse
kernel for it. TensorRT uses sparse kernels for Gemm/Conv layers, not MatMul, and only when
the channel counts are large enough to pay off; it still times sparse against dense and
keeps the faster, so "eligible" means "can be chosen", not "will be faster".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from ..masks.patterns import nm_compliance
from ..masks.report import LayerStats
from .onnx_weights import find_weights, initializer_arrays, load_onnx

if TYPE_CHECKING:
    import onnx

SPARSE_KERNEL_OPS = ("Gemm", "Conv")
MIN_CHANNELS = 64  # below this TensorRT's sparse kernels rarely win; configurable


@dataclass(frozen=True)
class OnnxLayer(LayerStats):
    """:class:`LayerStats` of one ONNX weight (``name`` is the PyTorch parameter name)."""

    initializer: str = ""
    op_type: str = ""
    sparse_kernel_eligible: bool = False
    reason: str = ""

    @property
    def pytorch_name(self) -> str:
        return self.name


@dataclass
class OnnxSparsityReport:
    """Per-weight sparsity of an ONNX graph; ``to_dict`` is the JSON schema."""

    layers: list[OnnxLayer]
    pattern: tuple[int, int]
    min_channels: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def eligible(self) -> list[OnnxLayer]:
        return [layer for layer in self.layers if layer.sparse_kernel_eligible]

    def layer(self, pytorch_name: str) -> OnnxLayer:
        for layer in self.layers:
            if layer.pytorch_name == pytorch_name:
                return layer
        raise KeyError(f"no ONNX weight maps to {pytorch_name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": f"{self.pattern[0]}:{self.pattern[1]}",
            "min_channels": self.min_channels,
            "weights": self.numel,
            "zeros": self.zeros,
            "sparsity": self.zeros / self.numel if self.numel else 0.0,
            "nm_compliant_layers": sum(layer.nm_ok for layer in self.layers),
            "sparse_kernel_eligible_layers": len(self.eligible),
            "matmul_layers_nm_compliant": sum(layer.nm_ok and layer.op_type == "MatMul" for layer in self.layers),
            "layers": [
                {
                    "pytorch_name": layer.name,
                    **asdict(layer),
                    "shape": list(layer.shape),
                    "sparsity": layer.sparsity,
                    "nm_ok": layer.nm_ok,
                }
                for layer in self.layers
            ],
            "meta": self.meta,
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def format_table(self) -> str:
        pattern = f"{self.pattern[0]}:{self.pattern[1]}"
        width = max([len("layer (PyTorch name)")] + [len(layer.pytorch_name) for layer in self.layers])
        title = "layer (PyTorch name)"
        head = f"{title:<{width}}  {'op':>6}  {'shape':>10}  {'sparsity':>8}  {pattern + ' ok':>7}  sparse kernel"
        lines = [head, "-" * len(head)]
        for layer in self.layers:
            shape = "x".join(str(d) for d in layer.shape)
            nm = f"{layer.nm_compliant / layer.nm_groups:.0%}" if layer.nm_groups else "n/a"
            verdict = "eligible" if layer.sparse_kernel_eligible else f"no: {layer.reason}"
            lines.append(
                f"{layer.pytorch_name:<{width}}  {layer.op_type:>6}  {shape:>10}  "
                f"{layer.sparsity:>8.2%}  {nm:>7}  {verdict}"
            )
        lines.append("-" * len(head))
        sparsity = self.zeros / self.numel if self.numel else 0.0
        lines.append(
            f"weights: {len(self.layers)} tensors, {self.numel:,} values, {self.zeros:,} zeros ({sparsity:.2%})"
        )
        ok = sum(layer.nm_ok for layer in self.layers)
        lines.append(
            f"{pattern} compliant: {ok}/{len(self.layers)}; eligible for sparse kernels: "
            f"{len(self.eligible)}/{len(self.layers)}"
        )
        stuck = sum(layer.nm_ok and layer.op_type == "MatMul" for layer in self.layers)
        if stuck:
            lines.append(
                f"{stuck} {pattern} layers are MatMul nodes, which TensorRT runs dense: "
                "rewrite them to Gemm (es-plugins inspect MODEL.onnx --rewrite-gemm OUT.onnx)"
            )
        return "\n".join(lines)


def _verdict(op_type: str, groups: int, nm_ok: bool, k: int, n: int, min_channels: int, pattern: str) -> str:
    if op_type not in SPARSE_KERNEL_OPS:
        return f"{op_type} (only Gemm/Conv use sparse kernels)"
    if groups != 1:
        return "grouped Conv"
    if not nm_ok:
        return f"not {pattern}"
    if min(k, n) < min_channels:
        return f"channels {k}x{n} < {min_channels}"
    return ""


def inspect_onnx(
    model: "str | Path | onnx.ModelProto",
    pattern: tuple[int, int] = (2, 4),
    min_channels: int = MIN_CHANNELS,
) -> OnnxSparsityReport:
    """Report sparsity, N:M compliance and sparse-kernel eligibility of every weight."""
    source = str(model) if isinstance(model, (str, Path)) else None
    proto = load_onnx(model) if isinstance(model, (str, Path)) else model
    arrays = initializer_arrays(proto)
    n, m = pattern
    label = f"{n}:{m}"
    layers = []
    for weight in find_weights(proto):
        array = arrays[weight.initializer]
        tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))
        groups, compliant = nm_compliance(tensor, n, m, weight.in_axis)
        nm_ok = groups > 0 and compliant == groups
        reason = _verdict(
            weight.op_type, weight.groups, nm_ok, weight.in_channels, weight.out_channels, min_channels, label
        )
        layers.append(
            OnnxLayer(
                name=weight.pytorch_name,
                initializer=weight.initializer,
                op_type=weight.op_type,
                shape=weight.shape,
                numel=int(array.size),
                zeros=int((array == 0).sum()),
                nm_groups=groups,
                nm_compliant=compliant,
                sparse_kernel_eligible=not reason,
                reason=reason,
            )
        )
    return OnnxSparsityReport(layers, pattern, min_channels, meta={"source": source} if source else {})


@dataclass(frozen=True)
class WeightComparison:
    """Result of comparing ONNX weights with a PyTorch model: an empty comparison never passes."""

    compared: int
    expected: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.compared >= self.expected > 0


def _match_names(onnx_names: list[str], params: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """ONNX weight name -> PyTorch parameter name, across a task-head or wrapper prefix.

    ``encoder.layer.0...`` (a bare-encoder export) matches ``bert.encoder.layer.0...`` (the
    checkpoint with its head) and the reverse, but only when exactly one candidate fits.
    """
    matched = {}
    for name in onnx_names:
        if name in params:
            matched[name] = name
            continue
        candidates = [p for p in params if p.endswith("." + name) or name.endswith("." + p)]
        if len(candidates) == 1:
            matched[name] = candidates[0]
    return matched


def compare_with_pytorch(
    model: "str | Path | onnx.ModelProto",
    params: Mapping[str, torch.Tensor],
    expected: list[str],
) -> WeightComparison:
    """Compare each ONNX weight with its PyTorch parameter, bit for bit, in PyTorch's layout.

    Args:
        expected: the parameter names that must be compared (the checkpoint's pruning
            targets); any not found in the graph is itself a problem, so a name mismatch
            cannot pass as "all identical".
    """
    proto = load_onnx(model) if isinstance(model, (str, Path)) else model
    arrays = initializer_arrays(proto)
    weights = find_weights(proto)
    names = _match_names([w.pytorch_name for w in weights], params)
    problems, seen = [], set()
    for weight in weights:
        torch_name = names.get(weight.pytorch_name)
        if torch_name is None:
            continue
        seen.add(torch_name)
        stored = arrays[weight.initializer]
        reference = params[torch_name].detach().cpu().numpy()
        got = stored.T if weight.transposed and stored.ndim == 2 else stored
        if got.shape != reference.shape or not np.array_equal(got, reference):
            zeros = (int((got == 0).sum()), int((reference == 0).sum())) if got.shape == reference.shape else None
            problems.append(
                f"{torch_name}: ONNX {weight.initializer} differs"
                + (
                    f" (zeros {zeros[0]} vs {zeros[1]} in PyTorch)"
                    if zeros
                    else f" (shape {got.shape} vs {reference.shape})"
                )
            )
    missing = [n for n in expected if n not in seen]
    compared = len(expected) - len(missing)
    if missing or not expected:
        problems.append(
            f"only {compared} of {len(expected)} targeted weights were found in the ONNX graph and "
            f"compared; not found: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return WeightComparison(compared, len(expected), tuple(problems))
