"""N:M structured masks: in every group of M consecutive weights along the input axis,
keep exactly N. This is the layout sparse tensor cores (cuSPARSELt, TensorRT) accept.

The rank of each weight inside its group is counted with M vectorised comparisons
(``rank_i = #{j: s_j > s_i} + #{j < i: s_j == s_i}``), which is exact under ties and
cheaper than ``topk`` + ``scatter`` for the small M used in practice.
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
    index = torch.arange(m, device=scores.device)
    rows = max(1, CHUNK // m)  # bounded transients whatever the layer size
    for start in range(0, groups.shape[0], rows):
        block = groups[start : start + rows]
        rank = torch.zeros(block.shape, dtype=torch.uint8, device=scores.device)
        for j in range(m):
            col = block[:, j : j + 1]
            rank += (col > block) | ((col == block) & (j < index))
        torch.lt(rank, n, out=keep[start : start + rows])
    moved_shape = scores.movedim(in_axis, -1).shape
    return keep.reshape(moved_shape).movedim(-1, in_axis).contiguous()


def nm_compliance(tensor: torch.Tensor, n: int, m: int, in_axis: int) -> tuple[int, int]:
    """Return ``(groups, compliant_groups)``: how many M-groups hold at most N non-zeros.

    A tensor whose input dimension is not divisible by ``m`` has no valid groups: ``(0, 0)``.
    """
    if tensor.shape[in_axis] % m:
        return 0, 0
    nonzeros = (_groups(tensor, m, in_axis) != 0).sum(dim=1)
    return nonzeros.numel(), int((nonzeros <= n).sum())
