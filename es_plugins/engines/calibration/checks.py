"""The checks every calibrated run makes before its first block, in memory or out of core:
the method, the calibration ids, the targets' blocks and weights, and given masks."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ...errors import MaskMismatchError, SparsityConfigError
from ...masks.state import SparsityState
from ...masks.targets import Target
from ...methods import MethodEntry, check_finite, entry_for, method_names
from ...methods.plan import SparsityPlan
from ...methods.selection import check_keeps_some


def group_by_block(targets: list[Target], prefix: str, count: int) -> list[list[Target]]:
    """Targets per transformer block ``prefix.N``; targets outside the blocks are an error
    (calibrated methods prune block by block)."""
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


def calibrated_entry(plan: SparsityPlan, masks: SparsityState | None) -> MethodEntry:
    """The registry entry of a calibrated plan; an error for a method that needs no
    calibration, or for given masks with a method that cannot refine them."""
    entry = entry_for(plan.method)
    if not entry.calibrated:
        raise SparsityConfigError(f"{plan.method.name!r} needs no calibration; use sparsify_(model, plan)")
    if masks is not None and not entry.refines_masks:
        refiners = [name for name in method_names() if entry_for(name).refines_masks]
        raise SparsityConfigError(
            f"a given mask can only be refined with {', '.join(refiners)}, not {plan.method.name!r}"
        )
    return entry


def check_calibrated_targets(
    plan: SparsityPlan, targets: list[Target], masks: SparsityState | None, model: nn.Module
) -> None:
    """The checks every calibrated run makes before the first block, in memory or out of core
    (``targets`` hold the real weights: the model's, or memory-mapped views of the shards;
    ``model`` names the parameters, and may be on the meta device): finite weights, a
    sparsity that keeps something in every layer, and given masks that fit the targets
    exactly and are not already applied (refinement needs the dense weights)."""
    check_finite(targets)
    sparsity = plan.method.target_sparsity
    if masks is None and plan.method.nm_pattern is None:
        for target in targets:
            check_keeps_some(sparsity, round(sparsity * target.numel), target.numel, f"layer {target.name!r}")
    if masks is None:
        return
    masks.validate(model, expected=[t.name for t in targets])
    extra = sorted(set(masks.masks) - {t.name for t in targets})
    if extra:
        raise MaskMismatchError(f"masks name layers outside the plan's targets: {extra[:5]}")
    weights = {t.name: t.param for t in targets}
    if all(
        not bool((weights[name].detach()[~mask.to(weights[name].device)] != 0).any())
        for name, mask in masks.masks.items()
    ):
        warnings.warn(
            "every weight the given mask prunes is already zero: SparseGPT refinement reconstructs from the "
            "*dense* weights (it compensates the error of removing them), so load the unpruned checkpoint "
            "and pass the mask; here it can only keep the weights as they are",
            stacklevel=4,
        )


def check_calibration(model: nn.Module, calibration: object) -> torch.Tensor:
    """Token ids ``[samples, seq_len]`` that fit the model's vocabulary and context, or an error."""
    if not isinstance(calibration, torch.Tensor) or calibration.dim() != 2 or calibration.shape[0] == 0:
        raise SparsityConfigError("calibration data must be a non-empty [samples, seq_len] tensor of token ids")
    if calibration.dtype.is_floating_point or calibration.dtype == torch.bool or calibration.is_complex():
        raise SparsityConfigError(f"calibration must hold integer token ids, got dtype {calibration.dtype}")
    getter = getattr(model, "get_input_embeddings", None)
    embeddings = getter() if callable(getter) else None
    vocab = getattr(embeddings, "num_embeddings", None)
    low, high = int(calibration.min()), int(calibration.max())
    if low < 0 or (vocab is not None and high >= vocab):
        raise SparsityConfigError(
            f"calibration token ids must be in [0, {vocab}) (the model's vocabulary); "
            f"got ids from {low} to {high}: was it tokenised with another tokenizer?"
        )
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and calibration.shape[1] > limit:
        raise SparsityConfigError(
            f"calibration seq_len={calibration.shape[1]} is larger than the model's maximum ({limit})"
        )
    return calibration
