"""N:M structured masks: in every group of M consecutive weights along the input axis,
keep exactly N. This is the layout sparse tensor cores (cuSPARSELt, TensorRT) accept.

The rank of each weight inside its group is counted pairwise: for every pair i < j,
``s_i >= s_j`` (ties go to the lower index) adds one to the loser's rank. That is exact
and deterministic under ties, which ``topk`` does not promise, and needs M(M-1)/2
comparisons on contiguous columns.
"""

from __future__ import annotations

import torch

from ..errors import SparsityConfigError
from .select import CHUNK


def _groups(tensor: torch.Tensor, m: int, in_axis: int) -> torch.Tensor:
    """View ``tensor`` as (-1, m) groups of consecutive elements along ``in_axis``."""
    moved = tensor.movedim(in_axis, -1)
    if moved.shape[-1] % m:
        raise ValueError(f"input dimension {moved.shape[-1]} is not divisible by M={m}")
    return moved.reshape(-1, m)


def nm_keep_mask(scores: torch.Tensor, n: int, m: int, in_axis: int) -> torch.Tensor:
    """Bool mask keeping the ``n`` highest scores in each group of ``m`` along ``in_axis``.

    Ties keep the lower input index, so the result is deterministic.
    """
    groups = _groups(scores, m, in_axis)
    keep = torch.empty(groups.shape, dtype=torch.bool, device=scores.device)
    rows = max(1, CHUNK // m)  # bounded transients whatever the layer size
    for start in range(0, groups.shape[0], rows):
        if m == 4:  # the hardware pattern: ranks unrolled on strided columns, no transposing copy (2x)
            keep[start : start + rows] = _keep_of_four(groups[start : start + rows], n)
            continue
        keep[start : start + rows] = _keep_by_pairs(groups[start : start + rows], n)
    moved_shape = scores.movedim(in_axis, -1).shape
    return keep.reshape(moved_shape).movedim(-1, in_axis).contiguous()


def _keep_by_pairs(groups: torch.Tensor, n: int) -> torch.Tensor:
    """Any M: each pair of a group compared once; a weight's rank counts the ones that beat it,
    an earlier one on a tie."""
    cols = groups.t().contiguous()  # (m, rows): contiguous columns
    rank = torch.zeros(cols.shape, dtype=torch.uint8, device=groups.device)
    for i in range(cols.shape[0]):
        for j in range(i + 1, cols.shape[0]):
            i_wins = cols[i] >= cols[j]
            rank[j] += i_wins
            rank[i] += ~i_wins
    return (rank < n).t()


def _keep_of_four(groups: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`nm_keep_mask`'s ranks for M = 4: a weight's rank is how many of its group beat it,
    an earlier one on a tie (so ties keep the lower index, as the generic loop does)."""
    x0, x1, x2, x3 = groups.unbind(1)
    ranks = (
        (x1 > x0).to(torch.uint8) + (x2 > x0) + (x3 > x0),
        (x0 >= x1).to(torch.uint8) + (x2 > x1) + (x3 > x1),
        (x0 >= x2).to(torch.uint8) + (x1 >= x2) + (x3 > x2),
        (x0 >= x3).to(torch.uint8) + (x1 >= x3) + (x2 >= x3),
    )
    return torch.stack([rank < n for rank in ranks], dim=1)


def nm_keep_within(weight: torch.Tensor, keep: torch.Tensor, n: int, m: int, in_axis: int) -> torch.Tensor:
    """N:M by magnitude *inside* an existing keep-mask: weights it prunes rank below every
    kept one and stay pruned (so a group may keep fewer than N, never a revived weight)."""
    keep = keep.to(weight.device)
    scores = weight.detach().abs().float().masked_fill(~keep, -1.0)
    return nm_keep_mask(scores, n, m, in_axis) & keep


def nm_compliance(tensor: torch.Tensor, n: int, m: int, in_axis: int) -> tuple[int, int]:
    """Return ``(groups, compliant_groups)``: how many M-groups hold at most N non-zeros.

    A tensor whose input dimension is not divisible by ``m`` has no valid groups: ``(0, 0)``.
    """
    if tensor.shape[in_axis] % m:
        return 0, 0
    nonzeros = (_groups(tensor, m, in_axis) != 0).sum(dim=1)
    return nonzeros.numel(), int((nonzeros <= n).sum())


MAX_M = 255  # group ranks are counted in uint8


def parse_pattern(pattern: object) -> tuple[int, int]:
    """The one N:M parser: ``"N:M"`` or ``(N, M)`` as two validated integers, 0 < N < M <= 255.

    Every config and command that takes a pattern calls this, so the spelling and the
    limits are the same everywhere.

    Example:
        >>> parse_pattern("2:4"), parse_pattern((4, 8))
        ((2, 4), (4, 8))
    """
    pair: tuple[object, ...] | None = None
    if isinstance(pattern, (tuple, list)) and len(pattern) == 2:
        pair = tuple(pattern)
    elif isinstance(pattern, str) and pattern.count(":") == 1:
        try:
            pair = tuple(int(part) for part in pattern.split(":"))
        except ValueError:
            pair = None
    if pair is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise SparsityConfigError(
            f"pattern must look like 'N:M' with integers N and M (e.g. '2:4'), or (N, M); got {pattern!r}"
        )
    n, m = int(pair[0]), int(pair[1])  # type: ignore[call-overload]
    if not 0 < n < m or m > MAX_M:
        raise SparsityConfigError(f"N:M pattern needs 0 < N < M <= {MAX_M}; got N={n}, M={m} (e.g. 2:4 or 4:8)")
    return n, m
