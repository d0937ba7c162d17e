"""The one-call entry point: resolve targets, compute masks, zero the weights."""

from __future__ import annotations

from torch import nn

from .methods import compute_masks
from .methods import MethodConfig
from .plan import SparsityPlan, make_plan
from .state import SparsityState
from .targets import resolve_targets


def sparsify_(model: nn.Module, plan: SparsityPlan | MethodConfig, show_progress: bool = False) -> SparsityState:
    """Prune ``model`` in place according to ``plan`` and return its :class:`SparsityState`.

    ``plan`` may also be a bare method config (``OMPConfig(0.5)``), which targets the
    default layers.

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
    targets = resolve_targets(model, plan.targets)
    masks = compute_masks(targets, plan.method, show_progress=show_progress)
    state = SparsityState(masks, {"plan": plan.to_dict(), "targets": [t.name for t in targets]})
    state.apply_(model)
    return state
