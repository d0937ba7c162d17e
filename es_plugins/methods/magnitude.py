"""One-shot magnitude pruning (OMP): score = |w|."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..masks.select import KeyFormat, LocalCombine, ScoreFn
from ..masks.targets import Target
from .configs import OMPConfig
from .registry import register_method
from .selection import select_by_scores


def magnitude_score(param: torch.Tensor) -> ScoreFn:
    """|w| of a flat range as fp32: exact for fp16/bf16, one dtype for the engine. Its
    ``gather(index)`` gives |w| at flat positions (the engine's sample, in one call). Weights
    on another device are scored into the engine's (host) buffer chunk by chunk.

    A bf16/fp16 weight in host memory also has ``keys`` (see ``ScoreFn``): its bits without
    the sign, as int16, rank exactly like |w| (ties included), and the selection runs on
    them — 2 bytes per score instead of widening to 4."""
    flat = param.detach().reshape(-1)
    if flat.dtype == torch.float32 and flat.device.type == "cpu":
        weights = flat.numpy()

        def score(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
            # one pass over the weights, in NumPy: on a worker thread a torch kernel would start
            # an intra-op thread team of its own (threads on threads), NumPy's loop stays on it
            np.abs(weights[start:stop], out=out.numpy())
            return out

    else:

        def score(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(flat[start:stop]).abs_()  # widen (exact) or copy to the host, then |.| in place

    score.gather = lambda index: flat[index.to(flat.device)].float().abs().cpu()  # type: ignore[attr-defined]
    if flat.dtype in _FIRST_NON_FINITE and flat.device.type == "cpu":
        score.keys = _magnitude_keys(flat)  # type: ignore[attr-defined]
    return score


# The first magnitude key (bits without the sign) that is an infinity; NaNs lie above it.
_FIRST_NON_FINITE = {torch.bfloat16: 0x7F80, torch.float16: 0x7C00}


def _magnitude_keys(flat: torch.Tensor) -> ScoreFn:
    """int16 keys of |w| for a 16-bit float weight: for non-negative IEEE floats the order of
    the bit patterns is the order of the values, so clearing the sign bit ranks |w| exactly."""
    bits = flat.view(torch.int16).numpy()

    def keys(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        np.bitwise_and(bits[start:stop], np.int16(0x7FFF), out=out.numpy())
        return out

    keys.gather = lambda index: torch.from_numpy(bits[index.numpy()] & np.int16(0x7FFF))  # type: ignore[attr-defined]
    keys.key_format = KeyFormat(f"|{flat.dtype}| bits", torch.int16, _FIRST_NON_FINITE[flat.dtype])  # type: ignore[attr-defined]
    return keys


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
