"""The one-call entry point: resolve targets, compute masks, zero the weights."""

from __future__ import annotations

from torch import nn

from .methods import compute_masks
from .plan import SparsityPlan
from .state import SparsityState
from .targets import resolve_targets


def sparsify_(model: nn.Module, plan: SparsityPlan, show_progress: bool = False) -> SparsityState:
    """Prune ``model`` in place according to ``plan`` and return its :class:`SparsityState`.

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
    targets = resolve_targets(model, plan.targets)
    masks = compute_masks(targets, plan.method, show_progress=show_progress)
    state = SparsityState(masks, {"plan": plan.to_dict(), "targets": [t.name for t in targets]})
    state.apply_(model)
    return state
