"""Calibrated pruning of a loaded model, block by block, feeding each block the outputs of
the already-pruned blocks before it (as SparseGPT and Wanda do).

Only one block's inputs/outputs and its layers' statistics are held at a time; the weights
are updated in place, so peak memory is the model plus one block's working set. The loop is
the one calibrated driver (:mod:`.driver`), here with the model as its block source.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ...masks.state import SparsityState
from ...methods.plan import SparsityPlan
from ..device import model_device, resolve_device, to_device
from .blocks import capture_block_inputs, find_blocks
from .driver import ModelBlocks, plan_blocks, run_blocks


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
    blocked = plan_blocks(model, plan, masks, calibration)
    home = model_device(model)
    work = home if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    _, blocks = find_blocks(model)
    batches = [batch.to(home) for batch in blocked.batches(calibration, batch_size)]
    inputs = to_device(capture_block_inputs(model, blocks[0], batches), work)
    given = blocked.given_masks(masks, work)
    source = ModelBlocks(model, blocked, work, home)
    try:
        run_blocks(source, blocked, inputs, given, show_progress=show_progress, on_block=on_block)
    finally:
        model.train(was_training)
    return SparsityState(source.keep, blocked.state_meta(calibration, masks))
