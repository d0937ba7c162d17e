"""Exact "prune the k lowest scores" over many tensors, without sorting or concatenating them.

Why not ``torch.kthvalue(torch.cat(...))``: concatenating a model's weights costs a full
copy plus index buffers (4x the weights measured here), and torch-prune's global path
costs ~12x. Instead:

1. sample a few hundred thousand scores to bracket the k-th value ``[lo, hi]``;
2. one pass counts scores below ``lo`` and gathers the (small) set inside the bracket;
3. ``kthvalue`` inside the bracket gives the exact threshold ``t``;
4. one pass writes bool keep-masks.

Peak extra memory is the bool masks (the output), one layer's scores and the bracket.

Ties: scores equal to ``t`` are pruned in a fixed order (target order, then flat index)
until exactly ``k`` are pruned. ``score <= t`` would over-prune on bf16/fp16 checkpoints,
where hundreds of thousands of magnitudes can share the threshold value.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch

ScoreFn = Callable[[], torch.Tensor]

_SAMPLE_SIZE = 1 << 18
_Z = 7.0  # bracket half-width in binomial standard deviations of the sample quantile


def _sample_scores(scores: Sequence[ScoreFn], numels: Sequence[int], total: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    samples = []
    for score_fn, numel in zip(scores, numels):
        take = max(1, round(_SAMPLE_SIZE * numel / total))
        flat = score_fn().reshape(-1)
        if take >= numel:
            samples.append(flat.clone())
        else:
            idx = torch.randint(numel, (take,), generator=generator, device=flat.device)
            samples.append(flat[idx])
        del flat
    return torch.cat(samples).sort().values


def _bracket(samples: torch.Tensor, k: int, total: int) -> tuple[float, float]:
    m = samples.numel()
    q = k / total
    centre = q * m
    half = _Z * math.sqrt(m * q * (1.0 - q)) + 2.0
    lo_idx = int(math.floor(centre - half))
    hi_idx = int(math.ceil(centre + half))
    lo = -math.inf if lo_idx < 0 else float(samples[lo_idx])
    hi = math.inf if hi_idx >= m else float(samples[hi_idx])
    return lo, hi


def _count_and_gather(
    scores: Sequence[ScoreFn], lo: float, hi: float, passes: Iterable[int]
) -> tuple[int, torch.Tensor]:
    below = 0
    inside = []
    for i in passes:
        s = scores[i]()
        below += int((s < lo).sum())
        in_bracket = (s >= lo) & (s <= hi)
        inside.append(s[in_bracket])
        del s, in_bracket
    return below, torch.cat(inside) if inside else torch.empty(0)


def kth_smallest_threshold(
    scores: Sequence[ScoreFn], numels: Sequence[int], k: int, progress: Callable = iter
) -> tuple[float, int]:
    """Return ``(t, ties_to_prune)``: the k-th smallest score and how many scores equal to
    ``t`` must be pruned (in tie-break order) so that exactly ``k`` are pruned."""
    total = sum(numels)
    if not 0 < k <= total:
        raise ValueError(f"k must be in (0, {total}], got {k}")
    lo, hi = _bracket(_sample_scores(scores, numels, total), k, total)
    while True:
        below, inside = _count_and_gather(scores, lo, hi, progress(range(len(scores))))
        if k <= below:  # bracket too high (rare: sample was unlucky); widen downwards
            lo, hi = -math.inf, lo
            continue
        if k > below + inside.numel():  # bracket too low; widen upwards
            lo, hi = hi, math.inf
            continue
        t = inside.kthvalue(k - below).values
        strictly_below = below + int((inside < t).sum())
        return float(t), k - strictly_below


def keep_largest_masks(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    k: int,
    progress: Callable = iter,
) -> list[torch.Tensor]:
    """Bool keep-masks that prune exactly the ``k`` lowest scores across all tensors.

    Args:
        scores: one callable per tensor returning its float scores (recomputed per pass
            so that no score tensor for the whole model is ever held).
        numels: element count of each tensor (same order).
        k: number of entries to prune in total.
        progress: wraps the per-tensor loop (e.g. a tqdm factory) on long runs.
    """
    total = sum(numels)
    if k <= 0:
        return [torch.ones_like(fn(), dtype=torch.bool) for fn in scores]
    if k >= total:
        return [torch.zeros_like(fn(), dtype=torch.bool) for fn in scores]
    t, ties_left = kth_smallest_threshold(scores, numels, k, progress)
    masks = []
    for i in range(len(scores)):
        s = scores[i]()
        keep = s > t
        if ties_left > 0:
            ties = s == t
            n_ties = int(ties.sum())
            if n_ties > ties_left:
                kept_ties = ties.reshape(-1).nonzero().squeeze(1)[ties_left:]
                keep.view(-1)[kept_ties] = True
                ties_left = 0
            else:
                ties_left -= n_ties
        else:
            keep |= s == t
        masks.append(keep)
        del s
    return masks
