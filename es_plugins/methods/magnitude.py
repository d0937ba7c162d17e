"""One-shot magnitude pruning (OMP): score = |w|."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from ..masks.select import LocalCombine, ScoreFn
from ..masks.targets import Target
from .configs import OMPConfig
from .registry import register_method
from .selection import select_by_scores


def magnitude_score(param: torch.Tensor) -> ScoreFn:
    """|w| of a flat range as fp32: exact for fp16/bf16, one dtype for the engine. Its
    ``gather(index)`` gives |w| at flat positions (the engine's sample, in one call)."""
    flat = param.detach().reshape(-1)
    if flat.dtype == torch.float32:

        def score(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
            return torch.abs(flat[start:stop], out=out)  # one pass over the weights

    else:

        def score(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(flat[start:stop]).abs_()  # fp16/bf16: widen (exact), then |.| in place

    score.gather = lambda index: flat[index.to(flat.device)].float().abs().cpu()  # type: ignore[attr-defined]
    return score


@register_method(OMPConfig, schedulable=True, shardable=True, checks_finite=True)
def omp_masks(
    targets: Sequence[Target],
    config: OMPConfig,
    progress: Callable,
    current: dict,
    combine: LocalCombine | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    scores = [magnitude_score(t.param) for t in targets]
    return select_by_scores(targets, scores, config.sparsity, config.scope, progress, current, combine)
