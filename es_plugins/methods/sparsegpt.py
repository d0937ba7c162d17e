"""SparseGPT for one weight matrix: choose the mask from the inverse Hessian of the inputs and
update the surviving weights to compensate, column block by column block.

Works on ``W`` as (out, in) in float32 whatever the model dtype; a given ``keep`` mask turns it
into pure reconstruction (refinement of an OMP, LTH or N:M mask: the mask is kept exactly).
"""

from __future__ import annotations

import torch

from ..errors import SparsityConfigError
from ..masks.targets import Target
from .configs import SparseGPTConfig
from .registry import LayerInputs, register_method


def _inverse_hessian_factor(hessian: torch.Tensor, damp: float, name: str) -> torch.Tensor:
    """Upper Cholesky factor of H^-1 after dampening; a clear error when H is singular."""
    h = hessian.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(damp * torch.mean(torch.diag(h)))
    try:
        lower = torch.linalg.cholesky(h)
        inverse = torch.cholesky_inverse(lower)
        return torch.linalg.cholesky(inverse, upper=True)
    except RuntimeError as exc:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise SparsityConfigError(
            f"the Hessian of {name!r} is singular after dampening (damp={damp}): use more calibration "
            f"samples or a larger damp ({exc.__class__.__name__})"
        ) from None


def lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` smallest of flat ``scores``, ties to the lower index — what a
    stable sort selects, from one ``kthvalue`` (linear time; the sort was a third of the run)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if count <= 0:
        return mask
    if count >= scores.numel():
        return ~mask
    threshold = scores.kthvalue(count).values
    torch.lt(scores, threshold, out=mask)
    ties = (scores == threshold).nonzero().squeeze(1)[: count - int(mask.sum())]
    mask[ties] = True
    return mask


def _prune_in_groups_(pruned: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """Fill ``pruned`` (M, rows), one group of M inputs in the transposed layout, with all but
    the ``n`` highest ``scores`` of each column pruned, ties kept at the lower input index (as
    :func:`es_plugins.masks.patterns.nm_keep_mask`). Called once per M columns inside SparseGPT's
    column loop, where every small op adds up: a sort and a scatter, in place."""
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices
    return pruned.fill_(True).scatter_(0, order[:n], False)


def _block_quota(total_pruned: int, done_cols: int, block_cols: int, cols: int, already: int) -> int:
    """Pruned count for one column block so that the running total tracks ``total_pruned``
    exactly (cumulative rounding), giving an exact count for the whole layer."""
    return round(total_pruned * (done_cols + block_cols) / cols) - already


SUBBLOCK = 32  # columns between in-block lazy updates: the rank-1 updates stay in cache


def _reconstruct_block(
    w1: torch.Tensor, hinv1: torch.Tensor, pruned1: torch.Tensor | None, nm: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prune one column block in column order, each column's error spread over the block's
    later columns (the OBS update); return ``(pruned block, errors, pruned mask)``.

    The block is transposed, (columns, rows), so each column is one contiguous row. Inside a
    sub-block of ``SUBBLOCK`` columns the updates are rank-1; the rest of the block is updated
    once per sub-block by one matmul — the same arithmetic as updating every later column at
    each step, with far less memory traffic and fewer small ops (the loop is SparseGPT's cost).
    With ``nm`` the mask is chosen per group of M columns as the group is reached, from the
    weights updated so far; otherwise ``pruned1`` is given.
    """
    count = w1.shape[0]
    diag = torch.diag(hinv1).unsqueeze(1)
    diag_sq = diag**2
    errors = torch.empty_like(w1)
    if pruned1 is None:
        pruned1 = torch.zeros_like(w1, dtype=torch.bool)
        scale = torch.zeros_like(w1)
    else:
        pruned1 = pruned1.contiguous()
        scale = pruned1.float() / diag  # column i's error is w_i * pruned_i / d_i
    sub = SUBBLOCK if nm is None else -(-SUBBLOCK // nm[1]) * nm[1]  # a group never spans two
    for s1 in range(0, count, sub):
        s2 = min(s1 + sub, count)
        for i in range(s1, s2):
            if nm is not None and i % nm[1] == 0:
                group = slice(i, i + nm[1])
                _prune_in_groups_(pruned1[group], w1[group].square().div_(diag_sq[group]), nm[0])
                torch.div(pruned1[group], diag[group], out=scale[group])
            torch.mul(w1[i], scale[i], out=errors[i])
            w1[i + 1 : s2].addr_(hinv1[i, i + 1 : s2], errors[i], alpha=-1)
        w1[s2:].addmm_(hinv1[s1:s2, s2:].t(), errors[s1:s2], alpha=-1)
    return w1.masked_fill_(pruned1, 0.0), errors, pruned1


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    in_axis: int,
    hessian: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    keep: torch.Tensor | None = None,
    blocksize: int = 128,
    damp: float = 0.01,
    name: str = "weight",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(new_weight, keep_mask)`` in ``weight``'s layout and dtype.

    Args:
        hessian: ``sum_x x x^T`` over the calibration inputs of this layer, (in, in), float32.
        sparsity: fraction pruned (exactly ``round(sparsity * numel)``), when no ``nm``/``keep``.
        nm: keep N of every M consecutive inputs. Column blocks are rounded up to a multiple
            of M, so every group lies inside one block and groups stay aligned to the inputs.
        keep: a fixed keep-mask (weight layout): reconstruct only.
    """
    w = weight.detach().float().movedim(in_axis, -1).reshape(-1, weight.shape[in_axis]).clone()
    rows, cols = w.shape
    fixed = None if keep is None else keep.movedim(in_axis, -1).reshape(rows, cols).to(w.device)
    w[:, torch.diag(hessian) == 0] = 0
    hinv = _inverse_hessian_factor(hessian.float().to(w.device), damp, name)
    if nm is not None and fixed is None:
        blocksize = -(-blocksize // nm[1]) * nm[1]
    pruned_mask = torch.zeros_like(w, dtype=torch.bool)
    total_pruned = round(sparsity * rows * cols)
    pruned_so_far = 0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        pruned1: torch.Tensor | None = None
        if fixed is not None:
            pruned1 = ~fixed[:, i1:i2].t()
        elif nm is None:
            quota = _block_quota(total_pruned, i1, i2 - i1, cols, pruned_so_far)
            diag = torch.diag(hinv[i1:i2, i1:i2])
            scores = (w[:, i1:i2] ** 2 / diag.reshape(1, -1) ** 2).reshape(-1)  # ties: (row, column) order
            pruned1 = lowest(scores, quota).view(rows, i2 - i1).t()
            pruned_so_far += quota
        # A given mask is kept as it is: the N:M choice is made only when there is none.
        choose = nm if fixed is None else None
        w1, errors, pruned1 = _reconstruct_block(w[:, i1:i2].t().contiguous(), hinv[i1:i2, i1:i2], pruned1, choose)
        w[:, i1:i2] = w1.t()
        pruned_mask[:, i1:i2] = pruned1.t()
        w[:, i2:].addmm_(errors.t(), hinv[i1:i2, i2:], alpha=-1)  # lazy update of the later blocks
    moved_shape = weight.movedim(in_axis, -1).shape
    new_weight = w.reshape(moved_shape).movedim(-1, in_axis).to(weight.dtype).contiguous()
    keep_out = ~pruned_mask
    return new_weight, keep_out.reshape(moved_shape).movedim(-1, in_axis).contiguous()


@register_method(SparseGPTConfig, calibrated=True, needs_hessian=True, refines_masks=True)
@torch.no_grad()
def sparsegpt_layer(
    target: Target, config: SparseGPTConfig, inputs: LayerInputs, keep: torch.Tensor | None
) -> torch.Tensor:
    """Prune (or, with ``keep``, only reconstruct) one layer in place; returns its keep-mask."""
    if inputs.hessian is None:
        raise SparsityConfigError("sparsegpt needs the inputs' Hessian (registered with needs_hessian=True)")
    weight = target.param
    new_weight, mask = sparsegpt_prune(
        weight,
        target.in_axis,
        inputs.hessian / max(inputs.rows, 1),
        float(config.sparsity or 0.0),
        config.nm,
        keep,
        config.blocksize,
        config.damp,
        target.name,
    )
    weight.data.copy_(new_weight)
    return mask.to(weight.device)
