"""Shared driver for score-based unstructured methods (magnitude, random, later Wanda).

A method only says how to score one target; this module applies the exact global or
per-layer "prune the k lowest" selection to those scores.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..masks.select import ScoreFn, keep_largest_masks
from ..targets import Target


def select_by_scores(
    targets: Sequence[Target],
    score_fns: Sequence[ScoreFn],
    sparsity: float,
    scope: str,
    progress: Callable,
) -> dict[str, torch.Tensor]:
    numels = [t.numel for t in targets]
    if scope == "global":
        k = round(sparsity * sum(numels))
        masks = keep_largest_masks(score_fns, numels, k, progress)
    else:
        masks = [
            keep_largest_masks([score_fn], [numel], round(sparsity * numel))[0]
            for score_fn, numel in progress(list(zip(score_fns, numels)))
        ]
    return {t.name: m.view(t.param.shape).to(t.param.device) for t, m in zip(targets, masks)}
