"""Wanda scores and masks for one weight, given the squared input-activation norms."""

from __future__ import annotations

import torch

from ..masks.patterns import nm_keep_mask
from ..masks.targets import Target
from .configs import WandaConfig
from .registry import LayerInputs, register_method


def wanda_scores(weight: torch.Tensor, in_axis: int, input_sq_norms: torch.Tensor) -> torch.Tensor:
    """``|W_ij| * ||X_j||`` with ``j`` the input feature, as float32 in the weight's layout."""
    norms = input_sq_norms.float().sqrt()
    shape = [1] * weight.dim()
    shape[in_axis] = -1
    return weight.detach().abs().float() * norms.view(shape)


def row_keep_mask(scores: torch.Tensor, sparsity: float, in_axis: int) -> torch.Tensor:
    """Prune the lowest scores of every output row (Wanda's comparison group).

    Row ``r`` prunes ``round(s*in*(r+1)) - round(s*in*r)`` weights: within one of ``s*in``
    per row, and exactly ``round(s * numel)`` for the layer, as the exactness contract asks.
    Ties: the lower input index is pruned first (stable sort)."""
    rows = scores.movedim(in_axis, -1)
    flat = rows.reshape(-1, rows.shape[-1])
    width = flat.shape[1]
    steps = torch.arange(flat.shape[0] + 1, dtype=torch.float64, device=flat.device)
    bounds = torch.round(sparsity * width * steps).long()
    counts = (bounds[1:] - bounds[:-1]).unsqueeze(1)
    rank = torch.empty_like(flat, dtype=torch.long)
    order = torch.sort(flat, dim=1, stable=True).indices
    rank.scatter_(1, order, torch.arange(width, device=flat.device).expand_as(order).contiguous())
    keep = (rank >= counts).reshape(rows.shape)
    return keep.movedim(-1, in_axis).contiguous()


def wanda_keep_mask(
    weight: torch.Tensor, in_axis: int, input_sq_norms: torch.Tensor, sparsity: float, nm: tuple[int, int] | None
) -> torch.Tensor:
    scores = wanda_scores(weight, in_axis, input_sq_norms)
    if nm:
        return nm_keep_mask(scores, nm[0], nm[1], in_axis)
    return row_keep_mask(scores, sparsity, in_axis)


@register_method(WandaConfig, calibrated=True)
def wanda_layer(target: Target, config: WandaConfig, inputs: LayerInputs, keep: torch.Tensor | None) -> torch.Tensor:
    """Prune one layer in place from its input norms; returns the keep-mask (no refinement:
    Wanda's score *is* its mask choice, so ``keep`` is never given)."""
    weight = target.param
    mask = wanda_keep_mask(weight, target.in_axis, inputs.sq_norms, float(config.sparsity or 0.0), config.nm)
    mask = mask.to(weight.device)
    weight.data.mul_(mask)
    return mask
