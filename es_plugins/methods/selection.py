"""Shared driver for score-based unstructured methods (magnitude, random, later Wanda).

A method only says how to score one target; this module applies the exact global or
per-layer "prune the k lowest" selection to those scores.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from ..errors import NonFiniteScoreError, NonFiniteWeightError, SparsityConfigError
from ..masks.select import LocalCombine, ScoreFn, iter_keep_largest_masks, keep_largest_masks
from ..masks.targets import Target

PRUNED_SCORE = -1.0  # below any real score (magnitudes and uniform draws are >= 0)


def respecting(score_fn: ScoreFn, keep: torch.Tensor | None) -> ScoreFn:
    """Wrap ``score_fn`` so weights already pruned by ``keep`` score below everything (its
    ``gather`` and ``keys``, when it has them, alike)."""
    if keep is None:
        return score_fn
    return _respecting(score_fn, keep.detach().reshape(-1).cpu())


def _respecting(score_fn: ScoreFn, flat_keep: torch.Tensor) -> ScoreFn:
    def score(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        return score_fn(start, stop, out).masked_fill_(~flat_keep[start:stop], PRUNED_SCORE)

    gather = getattr(score_fn, "gather", None)
    if gather is not None:
        score.gather = lambda index: gather(index).masked_fill_(~flat_keep[index], PRUNED_SCORE)  # type: ignore[attr-defined]
    keys = getattr(score_fn, "keys", None)
    if keys is not None:  # keys are >= 0 as well, so PRUNED_SCORE (-1) stays below them
        score.keys = _respecting(keys, flat_keep)  # type: ignore[attr-defined]
    if hasattr(score_fn, "key_format"):  # a wrapped key function describes the same keys
        score.key_format = score_fn.key_format  # type: ignore[attr-defined]
    return score


def check_keeps_some(sparsity: float, k: int, total: int, what: str) -> None:
    """Refuse a sparsity that rounds to pruning every weight: that is a broken model, not a plan."""
    if total > 0 and k >= total:
        largest = (total - 0.5) / total
        raise SparsityConfigError(
            f"sparsity {sparsity!r} prunes all {total:,} of {what} (round({sparsity} x {total:,}) = {k:,}); "
            f"use a sparsity below {largest:.6g} to keep at least one weight"
        )


def select_by_scores(
    targets: Sequence[Target],
    score_fns: Sequence[ScoreFn],
    sparsity: float,
    scope: str,
    progress: Callable,
    current: dict[str, torch.Tensor],
    combine: LocalCombine | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, keep)`` for each target in order, pruning exactly ``round(sparsity * n)``
    (over all targets, or per layer). The counts are checked before the first mask; masks
    are then made one at a time, so a caller that writes each one out (out-of-core pruning)
    never holds more than one.

    ``combine``: the selection's hook for tensors sharded across processes (FSDP): counts
    ``n`` are then summed over ranks, and each target is this rank's piece."""
    combine = combine if combine is not None else LocalCombine()
    score_fns = [respecting(fn, current.get(t.name)) for fn, t in zip(score_fns, targets)]
    numels = [t.numel for t in targets]
    if scope == "global":
        total = combine.sum(sum(numels))
        k = round(sparsity * total)
        check_keeps_some(sparsity, k, total, "the targeted weights")
        masks = iter_keep_largest_masks(score_fns, numels, k, progress, combine)
    else:
        totals = [combine.sum(numel) for numel in numels]
        for target, total in zip(targets, totals):
            check_keeps_some(sparsity, round(sparsity * total), total, f"layer {target.name!r}")
        masks = _per_layer(score_fns, numels, totals, sparsity, progress, combine)
    return ((t.name, m.view(t.param.shape).to(t.param.device)) for t, m in _naming_non_finite(targets, masks))


def _per_layer(
    score_fns: Sequence[ScoreFn],
    numels: Sequence[int],
    totals: Sequence[int],
    sparsity: float,
    progress: Callable,
    combine: LocalCombine,
) -> Iterator[torch.Tensor]:
    """One selection per layer; a non-finite score is reported with the layer's own index."""
    for index, (score_fn, numel, total) in enumerate(progress(list(zip(score_fns, numels, totals)))):
        try:
            yield keep_largest_masks([score_fn], [numel], round(sparsity * total), combine=combine)[0]
        except NonFiniteScoreError:
            raise NonFiniteScoreError(index) from None


def _naming_non_finite(
    targets: Sequence[Target], masks: Iterator[torch.Tensor]
) -> Iterator[tuple[Target, torch.Tensor]]:
    """Pair targets with their masks; a non-finite score becomes the error naming its weight
    (scores are computed from the weights, so that is where the NaN/Inf is)."""
    try:
        yield from zip(targets, masks)
    except NonFiniteScoreError as error:
        raise NonFiniteWeightError(non_finite_message(targets[error.index].name)) from None


def non_finite_message(name: str) -> str:
    return (
        f"weight {name!r} contains NaN or Inf values; fix the checkpoint or exclude the layer (exclude=...) "
        "before pruning"
    )
