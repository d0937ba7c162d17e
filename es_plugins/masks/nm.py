"""N:M structured masks: in every group of M consecutive weights along the input axis,
keep exactly N. This is the layout sparse tensor cores (cuSPARSELt, TensorRT) accept.

The rank of each weight inside its group is counted pairwise: for every pair i < j,
``s_i >= s_j`` (ties go to the lower index) adds one to the loser's rank. That is exact
and deterministic under ties, which ``topk`` does not promise, and needs M(M-1)/2
comparisons on contiguous columns.
"""

from __future__ import annotations

import torch

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
        cols = groups[start : start + rows].t().contiguous()  # (m, rows): contiguous columns
        rank = torch.zeros(cols.shape, dtype=torch.uint8, device=scores.device)
        for i in range(m):
            for j in range(i + 1, m):
                i_wins = cols[i] >= cols[j]
                rank[j] += i_wins
                rank[i] += ~i_wins
        keep[start : start + rows] = (rank < n).t()
    moved_shape = scores.movedim(in_axis, -1).shape
    return keep.reshape(moved_shape).movedim(-1, in_axis).contiguous()


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
