"""Sparsity reports: per layer, over the targeted weights, and over all parameters.

Counting uses the weights themselves (exact zeros), so the same report checks a model
in memory, a saved checkpoint, or one that went through another tool.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .patterns import nm_compliance
from .targets import Target
from .workers import ranges

_SAME_WIDTH_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def count_zeros(tensor: torch.Tensor, chunk: int = 1 << 20) -> int:
    """Exact zeros (+0 and -0) in ``tensor``, chunk by chunk (bounded transients on mapped
    checkpoints). Floats are counted on their bits, the sign bit shifted out: an integer
    ``count_nonzero`` is 2x (fp32) to 4x (bf16) faster than ``(x == 0).sum()`` on this CPU, and the count
    runs over every weight of every report. On the CPU the shift and the count run in NumPy, on
    views of the same memory, much faster than torch's int16 kernels in profiling on bf16.

    Example:
        >>> count_zeros(torch.tensor([0.0, -0.0, 1e-30, float("nan")], dtype=torch.bfloat16))
        2
    """
    flat = tensor.detach().reshape(-1)
    width = flat.element_size()
    if flat.is_floating_point() and width in _SAME_WIDTH_INT:
        bits = flat.view(_SAME_WIDTH_INT[width])
        if bits.device.type == "cpu":
            array = bits.numpy()
            return sum(
                (b - a) - int(np.count_nonzero(np.left_shift(array[a:b], 1))) for a, b in ranges(array.size, chunk)
            )
        return sum((b - a) - int(torch.count_nonzero(bits[a:b] << 1)) for a, b in ranges(flat.numel(), chunk))
    return sum((b - a) - int(torch.count_nonzero(flat[a:b])) for a, b in ranges(flat.numel(), chunk))


@dataclass(frozen=True)
class LayerStats:
    name: str
    shape: tuple[int, ...]
    numel: int
    zeros: int
    nm_groups: int = 0
    nm_compliant: int = 0

    @classmethod
    @torch.no_grad()
    def measure(
        cls,
        name: str,
        weight: torch.Tensor,
        in_axis: int,
        pattern: tuple[int, int] | None = None,
        zeros: int | None = None,
    ) -> "LayerStats":
        """The one way a layer's line of a report is made (in memory, out of core, calibrated):
        its exact zeros (``zeros``, when the caller counted them while writing ``weight``) and,
        with ``pattern``, its N:M compliance along ``in_axis``."""
        weight = weight.detach()
        groups, compliant = nm_compliance(weight, pattern[0], pattern[1], in_axis) if pattern else (0, 0)
        zeros = count_zeros(weight) if zeros is None else zeros
        return cls(name, tuple(weight.shape), weight.numel(), zeros, groups, compliant)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    @property
    def nm_ok(self) -> bool:
        return self.nm_groups > 0 and self.nm_compliant == self.nm_groups


@dataclass
class SparsityReport:
    """What a user checks after pruning; ``to_dict`` is the JSON schema."""

    layers: list[LayerStats]
    all_params: int
    all_zeros: int
    pattern: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def target_numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def target_zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def target_sparsity(self) -> float:
        return self.target_zeros / self.target_numel if self.target_numel else 0.0

    @property
    def overall_sparsity(self) -> float:
        return self.all_zeros / self.all_params if self.all_params else 0.0

    def to_dict(self) -> dict[str, Any]:
        pattern = f"{self.pattern[0]}:{self.pattern[1]}" if self.pattern else None
        return {
            "targets": {
                "layers": len(self.layers),
                "weights": self.target_numel,
                "zeros": self.target_zeros,
                "sparsity": self.target_sparsity,
            },
            "all_parameters": {
                "weights": self.all_params,
                "zeros": self.all_zeros,
                "sparsity": self.overall_sparsity,
            },
            "nm_pattern": pattern,
            "nm_compliant_layers": sum(layer.nm_ok for layer in self.layers) if pattern else None,
            "layers": [
                {
                    **{k: v for k, v in asdict(layer).items() if not k.startswith("nm_")},
                    "shape": list(layer.shape),
                    "sparsity": layer.sparsity,
                    **(
                        {
                            "nm_groups": layer.nm_groups,
                            "nm_compliant_groups": layer.nm_compliant,
                            "nm_compliant": layer.nm_ok,
                        }
                        if pattern
                        else {}
                    ),
                }
                for layer in self.layers
            ],
            "meta": self.meta,
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def format_table(self) -> str:
        """A fixed-width table for terminals and logs."""
        pattern = f"{self.pattern[0]}:{self.pattern[1]}" if self.pattern else None
        width = max([len("layer")] + [len(layer.name) for layer in self.layers])
        head = f"{'layer':<{width}}  {'shape':>12}  {'weights':>10}  {'sparsity':>8}"
        if pattern:
            head += f"  {pattern + ' ok':>9}"
        lines = [head, "-" * len(head)]
        for layer in self.layers:
            shape = "x".join(str(d) for d in layer.shape)
            row = f"{layer.name:<{width}}  {shape:>12}  {layer.numel:>10}  {layer.sparsity:>8.2%}"
            if pattern:
                mark = f"{layer.nm_compliant / layer.nm_groups:.0%}" if layer.nm_groups else "n/a"
                row += f"  {mark:>9}"
            lines.append(row)
        lines.append("-" * len(head))
        lines.append(
            f"targeted: {len(self.layers)} layers, {self.target_numel:,} weights, "
            f"{self.target_zeros:,} zeros ({self.target_sparsity:.2%})"
        )
        lines.append(f"all parameters: {self.all_params:,}, {self.all_zeros:,} zeros ({self.overall_sparsity:.2%})")
        if pattern:
            ok = sum(layer.nm_ok for layer in self.layers)
            lines.append(f"{pattern} compliant layers: {ok}/{len(self.layers)}")
        return "\n".join(lines)


def _unique_params(model: nn.Module) -> list[torch.Tensor]:
    return [p for _, p in model.named_parameters()]


@torch.no_grad()
def build_report(
    model: nn.Module,
    targets: Sequence[Target],
    pattern: tuple[int, int] | None = None,
    meta: dict[str, Any] | None = None,
) -> SparsityReport:
    """Count zeros in ``targets`` (with N:M compliance if ``pattern``) and in all params."""
    layers = [LayerStats.measure(t.name, t.param, t.in_axis, pattern) for t in targets]
    params = _unique_params(model)
    return SparsityReport(
        layers=layers,
        all_params=sum(p.numel() for p in params),
        all_zeros=sum(count_zeros(p) for p in params),
        pattern=pattern,
        meta=dict(meta or {}),
    )
