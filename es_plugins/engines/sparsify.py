"""The one entry point: any registered method, calibrated or not, prunes through ``sparsify_``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._deprecation import warn_renamed
from ..errors import SparsityConfigError
from ..masks.state import SparsityState
from ..masks.targets import Target, resolve_targets
from ..methods import MethodConfig, compute_masks, entry_for, method_names
from ..methods.plan import SparsityPlan, make_plan
from .calibration.in_memory import prune_calibrated_
from .sharding import RankCombine, local_view


def sparsify_(
    model: nn.Module,
    plan: SparsityPlan | MethodConfig,
    *,
    calibration: torch.Tensor | None = None,
    masks: SparsityState | None = None,
    current: SparsityState | None = None,
    level: float | None = None,
    show_progress: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    sharded: bool = False,
    group: Any = None,
    apply: bool = True,
    meta: dict[str, Any] | None = None,
) -> SparsityState:
    """Prune ``model`` in place according to ``plan`` and return its :class:`SparsityState`.

    The one path from a plan to masks: the CLI, the :class:`~es_plugins.Sparsifier` (one-shot
    and gradual), lottery-ticket rounds and sharded (FSDP) runs all call it, and what a method
    needs (calibration, a schedule, shards) is the registry's answer, not the caller's.
    ``plan`` may also be a bare method config (``OMPConfig(0.5)``), which targets the default
    layers.

    Args:
        calibration: token ids ``[samples, seq_len]`` for calibrated methods (Wanda,
            SparseGPT), which prune block by block from activations.
        masks: for methods that refine a given mask (SparseGPT): keep it exactly and only
            reconstruct the surviving weights.
        current: masks already in force (a gradual schedule's last step, the previous
            lottery round). Weights they prune stay pruned, so the new masks nest inside them
            with the exact new count.
        level: for methods registered ``schedulable``: the sparsity to reach now (a gradual
            schedule's step); the state still records the plan's final sparsity.
        batch_size: calibration sequences per forward call.
        device: where calibrated methods run (``"cuda"``, ``"cuda:1"``, ``"cpu"``, ``"auto"``).
            ``None`` runs where the model is. A model kept elsewhere (a large model on the CPU)
            is calibrated block by block, each block onloaded to ``device`` and back.
            Methods that prune from the weights alone run where the weights are.
        sharded: the model's weights are sharded across the ranks of ``group`` (FSDP2
            ``fully_shard``, or FSDP1 with ``use_orig_params=True``): each rank selects from
            its pieces, counts are exact over the full weights, masks stay sharded with their
            parameters (shaped like this rank's piece). Methods registered ``shardable``.
        apply: ``False`` returns the state without zeroing the weights (a lottery round
            chooses its mask on the trained weights and applies it after the rewind).
            Calibrated methods update weights as they go and need ``apply=True``.
        meta: extra entries for the state's metadata (a schedule's level, a lottery round).

    Raises:
        SparsityConfigError: calibration missing for a calibrated method, given to one that
            does not use it, ``masks`` for a method that cannot refine, or ``sharded`` /
            ``current`` for a method that cannot use them.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from es_plugins import OMPConfig, SparsityPlan, TargetSpec, sparsify_
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> plan = SparsityPlan(OMPConfig(0.5), TargetSpec(include=["0"]))
        >>> state = sparsify_(model, plan)
        >>> int((model[0].weight == 0).sum())
        32
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"sparsify_ needs a torch.nn.Module as model, got {type(model).__name__}")
    plan = make_plan(plan)
    entry = entry_for(plan.method)
    if entry.calibrated:
        if calibration is None:
            raise SparsityConfigError(
                f"method {entry.name!r} needs calibration=: a non-empty [samples, seq_len] tensor of token ids "
                "(the CLI's --calib)"
            )
        if sharded or current is not None or level is not None or not apply:
            raise SparsityConfigError(
                f"method {entry.name!r} prunes block by block from activations, updating the weights as it goes: "
                "sharded=, current=, level= and apply=False apply to whole-model methods"
            )
        state = prune_calibrated_(
            model, plan, calibration, masks=masks, batch_size=batch_size, show_progress=show_progress, device=device
        )
        state.meta.update(meta or {})
        return state
    if calibration is not None:
        raise SparsityConfigError(f"method {entry.name!r} needs no calibration: it prunes from the weights alone")
    if masks is not None:
        raise SparsityConfigError(
            f"method {entry.name!r} computes its own masks; masks= refines a given mask "
            "with a calibrated method such as 'sparsegpt'"
        )
    method = plan.method
    if level is not None:
        if not entry.schedulable:
            schedulable = [name for name in method_names() if entry_for(name).schedulable]
            raise SparsityConfigError(
                f"level= (a schedule's step) applies to {', '.join(schedulable)}, not {entry.name!r}"
            )
        method = method.at_sparsity(level)
    targets = resolve_targets(model, plan.targets)
    combine = None
    if sharded:
        targets = [Target(t.name, t.module_name, local_view(t.param), t.in_axis) for t in targets]
        combine = RankCombine(group)
    keep = compute_masks(
        targets,
        method,
        show_progress=show_progress,
        current=current.masks if current is not None else None,
        combine=combine,
    )
    state = SparsityState.from_plan(keep, plan, targets, **({"sharded": True} if sharded else {}), **(meta or {}))
    if apply:
        state.apply_(model)
    return state


def calibrated_prune_(
    model: nn.Module,
    plan: SparsityPlan | MethodConfig,
    calibration: torch.Tensor,
    masks: SparsityState | None = None,
    batch_size: int = 4,
    show_progress: bool = False,
) -> SparsityState:
    """Deprecated spelling of ``sparsify_(model, plan, calibration=..., masks=...)`` (one entry
    point, no alias pair): it warns, and goes away in 0.3."""
    warn_renamed("calibrated_prune_(model, plan, calibration)", "sparsify_(model, plan, calibration=...)")
    return sparsify_(
        model, plan, calibration=calibration, masks=masks, batch_size=batch_size, show_progress=show_progress
    )
