"""Random pruning, the paper's baseline: i.i.d. uniform scores from a seeded generator.

Scores are regenerated per pass from ``(seed, target index)``, so the selection engine
never holds scores for the whole model and the masks are reproducible.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..targets import Target
from . import register_method
from ._selection import select_by_scores
from .configs import RandomConfig


def _random_score(shape: torch.Size, seed: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@register_method(RandomConfig)
def random_masks(targets: Sequence[Target], config: RandomConfig, progress: Callable) -> dict[str, torch.Tensor]:
    scores = [_random_score(t.param.shape, config.seed * 1_000_003 + i) for i, t in enumerate(targets)]
    masks = select_by_scores(targets, scores, config.sparsity, config.scope, progress)
    return {name: mask.to(t.param.device) for (name, mask), t in zip(masks.items(), targets)}
