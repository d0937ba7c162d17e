"""Calibrate and prune one transformer block: the step the in-memory driver
(:mod:`.oneshot`) and the out-of-core driver (:mod:`es_plugins.engines.outofcore.sequential`) share.

Two schedules (the default is the method config's, see ``CalibratedConfig.passes``):

* **one pass** (the default but for N:M Wanda): the whole calibration set goes through the block as one
  batch. A forward pre-hook on each targeted layer sees its complete input, computes the
  statistics, prunes the weight in place and lets the layer run with it — "true sequential"
  in execution order — so the block's outputs (the next block's inputs) come from the same
  forward. Layers fed the same tensor (q/k/v, gate/up) share one set of statistics (one
  Hessian, not three).
* **two passes** (the reference codes' scheme, N:M Wanda's default): batch by batch, hooks collect
  every layer's statistics from the dense block; then all layers are pruned; then a second
  forward computes the outputs. Also the choice for calibration sets too large to run as one
  batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ...masks.targets import Target
from ...methods import MethodConfig, MethodEntry
from .blocks import block_output
from .stats import InputStats

Inputs = list[tuple[tuple, dict]]  # (args, kwargs) of the block, one entry per batch


def forward_all(block: nn.Module, inputs: Inputs) -> Inputs:
    """The block's outputs as the next block's inputs (same kwargs: masks, positions)."""
    return [((block_output(block(*args, **kwargs)), *args[1:]), kwargs) for args, kwargs in inputs]


class _StatisticsComplete(Exception):
    """Raised once every target has seen a batch: the rest of the block need not run."""


def collect_dense_statistics(
    block: nn.Module,
    targets: Sequence[Target],
    modules: dict[str, nn.Module],
    inputs: Inputs,
    stats: dict[str, InputStats],
) -> None:
    """The first of two passes: each target's input statistics from the dense block, batch by
    batch. Pre-hooks read the inputs, and the forward stops when the last target has its input:
    the layer after it (the MLP's down projection, a fifth of a block) is never computed."""
    pending: set[str] = set()

    def on_input(target: Target) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            stats[target.name].hook(module, args, None)
            pending.discard(target.name)
            if not pending:
                raise _StatisticsComplete

        return hook

    handles = [modules[t.name].register_forward_pre_hook(on_input(t)) for t in targets]
    try:
        for args, kwargs in inputs:
            pending.update(t.name for t in targets)
            try:
                block(*args, **kwargs)
            except _StatisticsComplete:
                pass
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def prune_block_(
    block: nn.Module,
    targets: Sequence[Target],
    modules: dict[str, nn.Module],
    inputs: Inputs,
    entry: MethodEntry,
    config: MethodConfig,
    given: dict[str, torch.Tensor] | None = None,
    passes: int = 1,
) -> tuple[dict[str, torch.Tensor], Inputs]:
    """Prune ``targets`` (weights updated in place) and return ``(keep masks, next inputs)``.

    Args:
        modules: the module that computes each target (hooked by target name).
        given: fixed masks to keep (refinement), by target name.
        passes: 1 (one forward; ``inputs`` must be a single batch) or 2 (stats, then outputs).
    """
    given = given or {}
    keeps: dict[str, torch.Tensor] = {}
    if not targets:
        return keeps, forward_all(block, inputs)
    if passes == 2:
        stats = {t.name: InputStats(t, hessian=entry.needs_hessian) for t in targets}
        collect_dense_statistics(block, targets, modules, inputs, stats)
        for target in targets:
            keeps[target.name] = entry.fn(target, config, stats.pop(target.name), given.get(target.name))
        return keeps, forward_all(block, inputs)
    if len(inputs) != 1:
        raise ValueError("one-pass calibration runs the whole calibration set as one batch")
    seen: list[tuple[torch.Tensor, InputStats]] = []  # holds each input alive: no address reuse

    def prune_on_arrival(target: Target) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]
            stats = next((s for held, s in seen if held is x), None)
            if stats is None:
                stats = InputStats(target, hessian=entry.needs_hessian)
                stats.hook(module, (x,), None)
                seen.append((x, stats))
            keeps[target.name] = entry.fn(target, config, stats, given.get(target.name))

        return hook

    handles = [modules[t.name].register_forward_pre_hook(prune_on_arrival(t)) for t in targets]
    try:
        outputs = forward_all(block, inputs)
    finally:
        for handle in handles:
            handle.remove()
        seen.clear()
    missing = [t.name for t in targets if t.name not in keeps]
    if missing:
        raise RuntimeError(f"the block's forward never ran {missing[:5]}; use passes=2")
    return keeps, outputs
