"""The one entry point: any registered method, calibrated or not, prunes through ``sparsify_``."""

from __future__ import annotations

import torch
from torch import nn

from ._deprecation import warn_renamed
from .calibration.oneshot import prune_calibrated_
from .errors import SparsityConfigError
from .methods import MethodConfig, compute_masks, entry_for
from .plan import SparsityPlan, make_plan
from .state import SparsityState
from .targets import resolve_targets


def sparsify_(
    model: nn.Module,
    plan: SparsityPlan | MethodConfig,
    *,
    calibration: torch.Tensor | None = None,
    masks: SparsityState | None = None,
    show_progress: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
) -> SparsityState:
    """Prune ``model`` in place according to ``plan`` and return its :class:`SparsityState`.

    ``plan`` may also be a bare method config (``OMPConfig(0.5)``), which targets the
    default layers. Whether the method needs ``calibration`` is the registry's answer
    (:func:`es_plugins.methods.is_calibrated`), not the caller's.

    Args:
        calibration: token ids ``[samples, seq_len]`` for calibrated methods (Wanda,
            SparseGPT), which prune block by block from activations.
        masks: for methods that refine a given mask (SparseGPT): keep it exactly and only
            reconstruct the surviving weights.
        batch_size: calibration sequences per forward call.
        device: where calibrated methods run (``"cuda"``, ``"cuda:1"``, ``"cpu"``, ``"auto"``).
            ``None`` runs where the model is. A model kept elsewhere (a large model on the CPU)
            is calibrated block by block, each block onloaded to ``device`` and back.
            Methods that prune from the weights alone run where the weights are.

    Raises:
        SparsityConfigError: calibration missing for a calibrated method, given to one that
            does not use it, or ``masks`` for a method that cannot refine.

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
        return prune_calibrated_(
            model, plan, calibration, masks=masks, batch_size=batch_size, show_progress=show_progress, device=device
        )
    if calibration is not None:
        raise SparsityConfigError(f"method {entry.name!r} needs no calibration: it prunes from the weights alone")
    if masks is not None:
        raise SparsityConfigError(
            f"method {entry.name!r} computes its own masks; masks= refines a given mask "
            "with a calibrated method such as 'sparsegpt'"
        )
    targets = resolve_targets(model, plan.targets)
    state = SparsityState.from_plan(compute_masks(targets, plan.method, show_progress=show_progress), plan, targets)
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
