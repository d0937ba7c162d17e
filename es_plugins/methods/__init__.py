"""Pruning methods: a config dataclass plus one registered function each.

The registry (:mod:`es_plugins.methods.registry`) maps every config type, calibrated or not,
to its function; :func:`es_plugins.sparsify_` is the one entry point that runs any of them.
:func:`compute_masks` runs the whole-model (uncalibrated) family on resolved targets without
touching the weights, which schedules and lottery rounds need.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch

from ..errors import NonFiniteWeightError, SparsityConfigError
from ..masks.patterns import parse_pattern
from ..masks.select import LocalCombine, chunks
from ..masks.targets import Target
from ..progress import progress_factory

# Method modules register themselves on import; the order is the CLI's --method order.
# isort: off
from . import magnitude, nm, random, wanda, sparsegpt  # noqa: F401

# isort: on

from .configs import CalibratedConfig, MethodConfig, NMConfig, OMPConfig, RandomConfig, SparseGPTConfig, WandaConfig
from .registry import MethodEntry, config_from_dict, entry_for, is_calibrated, method_names, register_method
from .selection import non_finite_message


def check_finite(targets: Sequence[Target], values: bool = True) -> None:
    """Refuse weights that cannot be ranked: not loaded (meta device), not floating point
    (int8 weights are quantised: prune first, quantise after), or NaN/Inf (they would poison
    thresholds). ``values=False`` skips the NaN/Inf read pass, for a method whose selection
    refuses them itself before any mask (global OMP: see ``register_method(checks_finite=)``)."""
    for target in targets:
        if target.param.is_meta:
            raise SparsityConfigError(
                f"weight {target.name!r} is on the meta device (the model's weights were never loaded): "
                "load the checkpoint (from_pretrained, or to_empty + load_state_dict) before pruning"
            )
        if not target.param.is_floating_point():
            raise SparsityConfigError(
                f"weight {target.name!r} has dtype {target.param.dtype}; pruning ranks floating-point weights "
                "(prune before quantising, or exclude the layer)"
            )
        flat = target.param.detach().reshape(-1)
        if values and not all(_finite_range(flat[a:b]) for a, b in chunks(flat.numel())):
            raise NonFiniteWeightError(non_finite_message(target.name))


def _finite_range(values: torch.Tensor) -> bool:
    """All finite, from one read and no allocation: NaN propagates into ``aminmax``, and an
    infinity is its min or max."""
    if values.numel() == 0:
        return True
    low, high = torch.aminmax(values)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def compute_masks(
    targets: Sequence[Target],
    config: MethodConfig,
    show_progress: bool = False,
    current: dict[str, torch.Tensor] | None = None,
    combine: LocalCombine | None = None,
) -> dict[str, torch.Tensor]:
    """Keep-masks (bool, same shape as each weight) for ``targets`` under a whole-model method.

    Args:
        current: masks already in force. Weights they prune stay pruned (they rank below
            every kept weight), so gradual schedules and lottery-ticket rounds give nested
            masks with the exact new count.
        combine: for targets that are this process's pieces of weights sharded across
            ranks (FSDP): how counts and samples are combined
            (:class:`es_plugins.engines.distributed.RankCombine`). Methods registered ``shardable``
            take it; the selection is then exact over the full tensors.

    Raises:
        SparsityConfigError: a calibrated method (it needs activations: use
            ``sparsify_(model, plan, calibration=...)``), or ``combine`` for a method that
            is not shardable.
    """
    return dict(iter_masks(targets, config, show_progress, current, combine))


def iter_masks(
    targets: Sequence[Target],
    config: MethodConfig,
    show_progress: bool = False,
    current: dict[str, torch.Tensor] | None = None,
    combine: LocalCombine | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """:func:`compute_masks` one ``(name, keep)`` at a time, in target order: out-of-core
    pruning writes each mask and its pruned weight before the next one exists."""
    entry = entry_for(config)
    if entry.calibrated:
        raise SparsityConfigError(
            f"method {config.name!r} needs calibration data: use es_plugins.sparsify_(model, plan, "
            "calibration=token_ids) or the CLI's --calib"
        )
    extra = {}
    if combine is not None:
        if not entry.shardable:
            shardable = [name for name in method_names() if entry_for(name).shardable]
            raise SparsityConfigError(f"sharded pruning supports {', '.join(shardable)}; got {config.name!r}")
        extra["combine"] = combine
    check_finite(targets, values=not (entry.checks_finite and getattr(config, "scope", None) == "global"))
    result = entry.fn(targets, config, progress_factory(show_progress, config.name), current or {}, **extra)
    return iter(result.items()) if isinstance(result, Mapping) else iter(result)


__all__ = [
    "CalibratedConfig",
    "MethodConfig",
    "MethodEntry",
    "NMConfig",
    "OMPConfig",
    "RandomConfig",
    "SparseGPTConfig",
    "WandaConfig",
    "check_finite",
    "compute_masks",
    "config_from_dict",
    "entry_for",
    "is_calibrated",
    "iter_masks",
    "method_names",
    "parse_pattern",
    "register_method",
]
