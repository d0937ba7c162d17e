"""Sequential, memory-bounded calibration: prune block by block, feeding each block the
outputs of the already-pruned blocks before it (as SparseGPT and Wanda do).

Only one block's inputs/outputs and its layers' statistics are held at a time; the weights
are updated in place, so peak memory is the model plus one block's working set.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

import torch
from torch import nn

from ..device import model_device, resolve_device, to_device
from ..errors import MaskMismatchError, SparsityConfigError
from ..methods import MethodEntry, check_finite, entry_for, method_names
from ..methods.selection import check_keeps_some
from ..plan import SparsityPlan
from ..progress import progress_factory
from ..state import SparsityState
from ..targets import Target, resolve_targets
from .blocks import capture_block_inputs, find_blocks
from .engine import prune_block_


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


@contextlib.contextmanager
def onloaded(block: nn.Module, work: torch.device, home: torch.device) -> Iterator[None]:
    """``block`` on ``work`` for the duration, back on ``home`` after (a no-op when they agree).
    ``Module.to`` swaps each parameter's data in place, so targets keep pointing at them."""
    if work == home:
        yield
        return
    block.to(work)
    try:
        yield
    finally:
        block.to(home)


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


@torch.no_grad()
def prune_calibrated_(
    model: nn.Module,
    plan: SparsityPlan,
    calibration: torch.Tensor,
    masks: SparsityState | None = None,
    batch_size: int = 4,
    show_progress: bool = False,
    on_block: Callable[[int, int], None] | None = None,
    device: str | torch.device | None = None,
) -> SparsityState:
    """Prune ``model`` in place with a calibrated method on ``calibration`` token ids ``[n, L]``.

    Called by :func:`es_plugins.sparsify_` once the registry says the plan's method is
    calibrated; it runs the registered per-layer function on each block's statistics.

    Args:
        masks: for methods registered with ``refines_masks`` (SparseGPT), keep these masks
            exactly and only reconstruct the weights (refinement of OMP / LTH / N:M masks).
        batch_size: calibration sequences per forward call with ``passes=2`` (one pass runs
            the whole set as one batch).
        device: where the blocks are calibrated (``None``: where the model is). When the model
            lives elsewhere, each block is onloaded to ``device``, calibrated and pruned there,
            and moved back: the model never has to fit the device, only one block and its
            activations do (llm-compressor's sequential onloading). Statistics, Hessians and
            SparseGPT updates stay on ``device``; masks come back beside the weights.

    Raises:
        SparsityConfigError: bad calibration data, masks for a method that cannot refine,
            layers outside the blocks, or a singular Hessian.
        MaskMismatchError: ``masks`` do not fit the model.
    """
    config = plan.method
    entry = calibrated_entry(plan, masks)
    check_calibration(model, calibration)
    prefix, blocks = find_blocks(model)
    grouped = group_by_block(resolve_targets(model, plan.targets), prefix, len(blocks))
    all_targets = [t for group in grouped for t in group]
    check_calibrated_targets(plan, all_targets, masks, model)

    home = model_device(model)
    work = home if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    passes = config.calibration_passes or 2
    size = calibration.shape[0] if passes == 1 else batch_size
    batches = [calibration[i : i + size].to(home) for i in range(0, calibration.shape[0], size)]
    inputs = to_device(capture_block_inputs(model, blocks[0], batches), work)
    keep: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    given = {name: mask.to(work) for name, mask in masks.masks.items()} if masks is not None else {}
    progress = progress_factory(show_progress, f"{config.name} (block)")
    try:
        for index in progress(range(len(blocks))):
            targets = grouped[index]
            hooked = {t.name: modules[t.module_name] for t in targets}
            with onloaded(blocks[index], work, home):
                kept, inputs = prune_block_(blocks[index], targets, hooked, inputs, entry, config, given, passes)
            keep.update({name: mask.to(home) for name, mask in kept.items()})
            if on_block:
                on_block(index, len(blocks))
    finally:
        model.train(was_training)
    return SparsityState.from_plan(
        keep,
        plan,
        all_targets,
        calibration={"samples": int(calibration.shape[0]), "seq_len": int(calibration.shape[1])},
        refined_from=(masks.meta.get("plan") if masks is not None else None),
    )
