"""One-shot magnitude pruning (OMP): score = |w|."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..targets import Target
from . import register_method
from ._selection import select_by_scores
from .configs import OMPConfig


def magnitude_score(param: torch.Tensor) -> Callable[[], torch.Tensor]:
    # fp32 scores: exact for fp16/bf16 inputs, and one dtype for the selection engine.
    return lambda: param.detach().abs().float()


@register_method(OMPConfig)
def omp_masks(targets: Sequence[Target], config: OMPConfig, progress: Callable) -> dict[str, torch.Tensor]:
    scores = [magnitude_score(t.param) for t in targets]
    return select_by_scores(targets, scores, config.sparsity, config.scope, progress)
