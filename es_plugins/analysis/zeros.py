"""Near-zero-weight statistics: how many weights already sit (almost) at zero.

The paper reports that self-supervised pre-training leaves more near-zero weights than
supervised pre-training (DINO vs ViT) and that sparsity can emerge abruptly during training;
this counts it per layer and overall, with an absolute threshold or one relative to each
layer's mean |w| (so layers of different scale are comparable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import SparsityConfigError, check_choice
from ..masks.select import chunks
from ..masks.targets import Target

MODES = ("absolute", "relative")


@dataclass(frozen=True)
class NearZeroStats:
    threshold: float
    mode: str
    layers: dict[str, tuple[int, int]]  # name -> (near-zero count, numel)

    @property
    def overall(self) -> float:
        total = sum(n for _, n in self.layers.values())
        return sum(c for c, _ in self.layers.values()) / total if total else 0.0

    def fractions(self) -> dict[str, float]:
        return {name: c / n for name, (c, n) in self.layers.items()}

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "mode": self.mode, "overall": self.overall, "layers": self.fractions()}


@torch.no_grad()
def near_zero_stats(
    targets: Sequence[Target],
    threshold: float = 1e-2,
    mode: str = "relative",
    masks: Mapping[str, torch.Tensor] | None = None,
) -> NearZeroStats:
    """Count weights with ``|w| < threshold`` (absolute) or ``|w| < threshold * mean|w|``
    of their layer (relative).

    Args:
        masks: keep-masks of weights already pruned; those weights are left out (of the
            count, the layer size and the mean |w|), so a pruned checkpoint reports the
            near-zero weights that training left, not the ones pruning set.
    """
    check_choice("mode", mode, MODES)
    if not threshold > 0:
        raise SparsityConfigError(f"threshold must be > 0, got {threshold!r}")
    layers = {}
    for target in targets:
        flat = target.param.detach().reshape(-1)
        if masks is not None and target.name in masks:
            flat = flat[masks[target.name].reshape(-1).to(flat.device)]
        if flat.numel() == 0:
            layers[target.name] = (0, 0)
            continue
        limit = threshold * float(flat.abs().float().mean()) if mode == "relative" else threshold
        count = sum(int((flat[a:b].abs() < limit).sum()) for a, b in chunks(flat.numel()))
        layers[target.name] = (count, flat.numel())
    return NearZeroStats(threshold, mode, layers)
