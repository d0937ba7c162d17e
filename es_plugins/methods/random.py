"""Random pruning, the paper's baseline: i.i.d. uniform scores from a seeded generator.

Scores are regenerated per pass from ``(seed, target index)``, so the selection engine
never holds scores for the whole model and the masks are reproducible.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from ..masks.select import ScoreFn
from ..masks.targets import Target
from .configs import RandomConfig
from .registry import register_method
from .selection import select_by_scores

_BLOCK = 4096


def _random_score(seed: int) -> ScoreFn:
    """Uniform scores for a flat range. Every aligned block of ``_BLOCK`` elements has its
    own seed, so any pass over any range regenerates identical values."""

    def score(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        block = torch.empty(_BLOCK)
        for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1):
            torch.rand(_BLOCK, generator=torch.Generator().manual_seed(seed * 1_000_003 + b), out=block)
            lo, hi = max(start, b * _BLOCK), min(stop, (b + 1) * _BLOCK)
            out[lo - start : hi - start] = block[lo - b * _BLOCK : hi - b * _BLOCK]
        return out

    return score


@register_method(RandomConfig, schedulable=True)
def random_masks(
    targets: Sequence[Target], config: RandomConfig, progress: Callable, current: dict
) -> Iterator[tuple[str, torch.Tensor]]:
    scores = [_random_score(config.seed * 10_007 + i) for i, _ in enumerate(targets)]
    return select_by_scores(targets, scores, config.sparsity, config.scope, progress, current)
