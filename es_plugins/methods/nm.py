"""N:M magnitude pruning along each layer's input axis."""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch

from ..errors import SparsityConfigError
from ..masks.nm import nm_keep_mask, nm_keep_within
from ..targets import Target
from .configs import NMConfig
from .registry import register_method


@register_method(NMConfig)
def nm_masks(targets: Sequence[Target], config: NMConfig, progress: Callable, current: dict) -> dict[str, torch.Tensor]:
    incompatible = [t for t in targets if t.param.shape[t.in_axis] % config.m]
    if incompatible and not config.skip_incompatible:
        listed = ", ".join(f"{t.name} (in={t.param.shape[t.in_axis]})" for t in incompatible)
        raise SparsityConfigError(
            f"{config.pattern} needs input dimensions divisible by M={config.m}; not divisible: "
            f"{listed}. Exclude these layers or set skip_incompatible=True to leave them dense."
        )
    if incompatible:
        warnings.warn(
            f"{config.pattern}: leaving {len(incompatible)} layer(s) dense (input dimension not "
            f"divisible by {config.m}): {', '.join(t.name for t in incompatible)}",
            stacklevel=3,
        )
    skipped = {t.name for t in incompatible}
    masks = {}
    for target in progress(list(targets)):
        if target.name in skipped:
            masks[target.name] = torch.ones_like(target.param, dtype=torch.bool)
        else:
            if target.name in current:  # never revive a weight an earlier step pruned
                keep = nm_keep_within(target.param, current[target.name], config.n, config.m, target.in_axis)
            else:
                keep = nm_keep_mask(target.param.detach().abs().float(), config.n, config.m, target.in_axis)
            masks[target.name] = keep
    return masks
