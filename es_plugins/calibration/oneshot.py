"""Sequential, memory-bounded calibration: prune block by block, feeding each block the
outputs of the already-pruned blocks before it (as SparseGPT and Wanda do).

Only one block's inputs/outputs and its layers' statistics are held at a time; the weights
are updated in place, so peak memory is the model plus one block's working set.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from ..errors import MaskMismatchError, SparsityConfigError
from ..methods import check_finite
from ..methods._selection import check_keeps_some
from ..methods.calibrated import CalibratedConfig, SparseGPTConfig, WandaConfig
from ..methods.sparsegpt import sparsegpt_prune
from ..methods.wanda import wanda_keep_mask
from ..plan import SparsityPlan
from ..progress import progress_factory
from ..state import SparsityState
from ..targets import Target, resolve_targets
from .blocks import block_output, capture_block_inputs, find_blocks
from .stats import InputStats


def _targets_by_block(model: nn.Module, plan: SparsityPlan, prefix: str, count: int) -> list[list[Target]]:
    targets = resolve_targets(model, plan.targets)
    grouped: list[list[Target]] = [[] for _ in range(count)]
    outside = []
    for target in targets:
        rest = target.module_name[len(prefix) + 1 :] if target.module_name.startswith(prefix + ".") else None
        index = rest.split(".", 1)[0] if rest else None
        if index is None or not index.isdigit():
            outside.append(target.name)
        else:
            grouped[int(index)].append(target)
    if outside:
        raise SparsityConfigError(
            f"calibration methods prune layers inside the transformer blocks ({prefix}.N) only; "
            f"exclude these: {outside[:5]}"
        )
    return grouped


@torch.no_grad()
def calibrated_prune_(
    model: nn.Module,
    plan: SparsityPlan,
    calibration: torch.Tensor,
    masks: SparsityState | None = None,
    batch_size: int = 4,
    show_progress: bool = False,
    on_block: Callable[[int, int], None] | None = None,
) -> SparsityState:
    """Prune ``model`` in place with Wanda or SparseGPT on ``calibration`` token ids ``[n, L]``.

    Args:
        masks: with SparseGPT, keep these masks exactly and only reconstruct the weights
            (refinement of OMP / LTH / N:M masks).
        batch_size: calibration sequences per forward call.

    Raises:
        SparsityConfigError: no calibration data, a method without calibration, a mask with
            Wanda, layers outside the blocks, or a singular Hessian.
        MaskMismatchError: ``masks`` do not fit the model.
    """
    config = plan.method
    if not isinstance(config, CalibratedConfig):
        raise SparsityConfigError(f"{config.name!r} needs no calibration; use sparsify_(model, plan)")
    if not isinstance(calibration, torch.Tensor) or calibration.dim() != 2 or calibration.shape[0] == 0:
        raise SparsityConfigError("calibration data must be a non-empty [samples, seq_len] tensor of token ids")
    if calibration.dtype.is_floating_point or calibration.dtype == torch.bool or calibration.is_complex():
        raise SparsityConfigError(f"calibration must hold integer token ids, got dtype {calibration.dtype}")
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(embeddings, "num_embeddings", None)
    low, high = int(calibration.min()), int(calibration.max())
    if low < 0 or (vocab is not None and high >= vocab):
        raise SparsityConfigError(f"calibration token ids must be in [0, {vocab}) (the model's vocabulary); "
                                  f"got ids from {low} to {high}: was it tokenised with another tokenizer?")
    if masks is not None and not isinstance(config, SparseGPTConfig):
        raise SparsityConfigError("a given mask can only be refined with SparseGPT (method 'sparsegpt')")
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and calibration.shape[1] > limit:
        raise SparsityConfigError(f"calibration seq_len={calibration.shape[1]} is larger than the model's maximum ({limit})")
    prefix, blocks = find_blocks(model)
    grouped = _targets_by_block(model, plan, prefix, len(blocks))
    all_targets = [t for group in grouped for t in group]
    check_finite(all_targets)
    if config.nm is None and masks is None:
        for target in all_targets:
            check_keeps_some(config.sparsity, round(config.sparsity * target.numel), target.numel,
                             f"layer {target.name!r}")
    if masks is not None:
        masks.validate(model, expected=[t.name for t in all_targets])
        extra = sorted(set(masks.masks) - {t.name for t in all_targets})
        if extra:
            raise MaskMismatchError(f"masks name layers outside the plan's targets: {extra[:5]}")
        params = dict(model.named_parameters())
        if all(not bool((params[n].detach()[~m.to(params[n].device)] != 0).any()) for n, m in masks.masks.items()):
            warnings.warn(
                "every weight the given mask prunes is already zero: SparseGPT refinement reconstructs from the "
                "*dense* weights (it compensates the error of removing them), so load the unpruned checkpoint "
                "and pass the mask; here it can only keep the weights as they are", stacklevel=2)

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = [calibration[i : i + batch_size].to(device) for i in range(0, calibration.shape[0], batch_size)]
    inputs = capture_block_inputs(model, blocks[0], batches)
    keep: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    progress = progress_factory(show_progress, f"{config.name} (block)")
    try:
        for index in progress(range(len(blocks))):
            block, targets = blocks[index], grouped[index]
            if targets:
                stats = {t.name: InputStats(t, hessian=isinstance(config, SparseGPTConfig)) for t in targets}
                handles = [modules[t.module_name].register_forward_hook(stats[t.name].hook) for t in targets]
                try:
                    for args, kwargs in inputs:
                        block(*args, **kwargs)
                finally:
                    for handle in handles:
                        handle.remove()
                for target in targets:
                    keep[target.name] = _prune_layer(target, config, stats.pop(target.name), masks)
            # Sequential: the next block sees this block's *pruned* outputs.
            inputs = [((block_output(block(*args, **kwargs)), *args[1:]), kwargs) for args, kwargs in inputs]
            if on_block:
                on_block(index, len(blocks))
    finally:
        model.train(was_training)
    meta = {"plan": plan.to_dict(), "targets": [t.name for t in all_targets],
            "calibration": {"samples": int(calibration.shape[0]), "seq_len": int(calibration.shape[1])},
            "refined_from": (masks.meta.get("plan") if masks is not None else None)}
    return SparsityState(keep, meta)


def _prune_layer(target: Target, config: CalibratedConfig, stats: InputStats, masks: SparsityState | None) -> torch.Tensor:
    weight = target.param
    if isinstance(config, WandaConfig):
        keep = wanda_keep_mask(weight, target.in_axis, stats.sq_norms, config.sparsity, config.nm).to(weight.device)
        weight.mul_(keep)
        return keep
    given = masks.masks[target.name] if masks is not None else None
    new_weight, keep = sparsegpt_prune(
        weight, target.in_axis, stats.hessian / max(stats.rows, 1), config.sparsity, config.nm, given,
        config.blocksize, config.damp, target.name)
    weight.copy_(new_weight)
    return keep.to(weight.device)
