"""Sparse merge of a low-rank update into a pruned base: re-mask (or re-project to N:M) and
measure how much of the update the masks threw away.

Framework-free: the PEFT adapter hands over merged weights, the pre-merge base weights and the
masks; this module holds the arithmetic, so any LoRA-like library can reuse it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..masks.patterns import nm_keep_within, parse_pattern

# Above this fraction of the update's norm thrown away by the sparse merge, the merged model can
# differ noticeably from the trained one: warn, and point to training inside the mask.
DISCARD_WARNING_FRACTION = 0.10


@dataclass
class MergeReport:
    """How much of each layer's update (``W_merged - W_base``) the masks discarded."""

    layers: dict[str, float] = field(default_factory=dict)  # name -> ||discarded|| / ||update||
    discarded_norm: float = 0.0
    update_norm: float = 0.0
    metric_before: float | None = None
    metric_after: float | None = None

    @property
    def discarded_ratio(self) -> float:
        return self.discarded_norm / self.update_norm if self.update_norm else 0.0

    def to_dict(self) -> dict:
        return {
            "discarded_ratio": self.discarded_ratio,
            "layers": self.layers,
            "metric_before_merge": self.metric_before,
            "metric_after_merge": self.metric_after,
        }


@dataclass(frozen=True)
class MergedLayer:
    """One merged weight (updated in place), its pre-merge base and its keep-mask."""

    weight: torch.Tensor
    base: torch.Tensor
    mask: torch.Tensor
    in_axis: int = 1
    trained_in_mask: bool = False  # the update was trained through the mask (its rest never acted)


@torch.no_grad()
def sparsify_merged_(
    layers: Mapping[str, MergedLayer], pattern: str | tuple[int, int] | None = None, warn_hint: str = ""
) -> MergeReport:
    """Zero each merged weight outside its mask (with ``pattern``, keep the N largest of every
    M *within* the mask) and report the discarded share of the update, warning above
    :data:`DISCARD_WARNING_FRACTION`.

    Example:
        >>> import torch
        >>> base = torch.tensor([[1.0, 0.0]]); mask = base != 0
        >>> merged = base + torch.tensor([[0.0, 1.0]])
        >>> sparsify_merged_({"w": MergedLayer(merged, base, mask)}).discarded_ratio
        1.0
    """
    nm = parse_pattern(pattern) if pattern is not None else None
    report = MergeReport()
    for name, layer in layers.items():
        weight = layer.weight
        mask = layer.mask.to(weight.device)
        if nm is not None:
            mask = nm_keep_within(weight, mask, nm[0], nm[1], layer.in_axis)
        update = weight.detach().float() - layer.base.to(weight.device).float()
        if layer.trained_in_mask:
            update = update * mask
        discarded, total = float(update[~mask].norm()), float(update.norm())
        report.layers[name] = discarded / total if total else 0.0
        report.discarded_norm = math.hypot(report.discarded_norm, discarded)
        report.update_norm = math.hypot(report.update_norm, total)
        weight.mul_(mask)
    if report.discarded_ratio > DISCARD_WARNING_FRACTION:
        warnings.warn(
            f"the sparse merge discarded {report.discarded_ratio:.1%} of the LoRA update's norm "
            f"(more than {DISCARD_WARNING_FRACTION:.0%}), so the merged model may differ from the trained one"
            f"{'; ' + warn_hint if warn_hint else ''}",
            stacklevel=3,
        )
    return report
