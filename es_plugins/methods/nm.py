"""N:M magnitude pruning along each layer's input axis."""

from __future__ import annotations

import warnings
from typing import Callable, Iterator, Sequence

import torch

from ..errors import SparsityConfigError
from ..masks.patterns import nm_keep_mask, nm_keep_within
from ..masks.targets import Target
from .configs import NMConfig
from .registry import register_method


@register_method(NMConfig)
def nm_masks(
    targets: Sequence[Target], config: NMConfig, progress: Callable, current: dict
) -> Iterator[tuple[str, torch.Tensor]]:
    incompatible = [t for t in targets if t.param.shape[t.in_axis] % config.m]
    if incompatible and not config.skip_incompatible:
        listed = ", ".join(f"{t.name} (in={t.param.shape[t.in_axis]})" for t in incompatible)
        raise SparsityConfigError(
            f"{config.pattern} needs input dimensions divisible by M={config.m}; not divisible: "
            f"{listed}. Exclude these layers or set skip_incompatible=True to leave them dense."
        )
    if incompatible and len(incompatible) == len(targets):
        raise SparsityConfigError(
            f"{config.pattern}: no targeted layer has an input dimension divisible by M={config.m}, so "
            "skip_incompatible (--skip-incompatible) would leave every layer dense: choose another pattern or targets"
        )
    if incompatible:
        warnings.warn(
            f"{config.pattern}: leaving {len(incompatible)} layer(s) dense (input dimension not "
            f"divisible by {config.m}): {', '.join(t.name for t in incompatible)}",
            stacklevel=3,
        )
    skipped = {t.name for t in incompatible}
    return (
        (target.name, _nm_keep(target, config, skipped, current.get(target.name))) for target in progress(list(targets))
    )


def _nm_keep(target: Target, config: NMConfig, skipped: set[str], current: torch.Tensor | None) -> torch.Tensor:
    if target.name in skipped:
        return torch.ones_like(target.param, dtype=torch.bool)
    if current is not None:  # never revive a weight an earlier step pruned
        return nm_keep_within(target.param, current, config.n, config.m, target.in_axis)
    return nm_keep_mask(target.param.detach().abs().float(), config.n, config.m, target.in_axis)
