"""Pruning methods: a config type plus a pure function ``(targets, config) -> keep-masks``.

New methods register with :func:`register_method`; adapters and the CLI only ever call
:func:`compute_masks`, so a fix to a method is made once, here.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch

from ..errors import NonFiniteWeightError, SparsityConfigError
from ..masks.select import chunks
from ..progress import progress_factory
from ..targets import Target
from .configs import MethodConfig, NMConfig, OMPConfig, RandomConfig, parse_pattern

MaskFn = Callable[..., dict[str, torch.Tensor]]
_REGISTRY: dict[type, MaskFn] = {}
_BY_NAME: dict[str, type] = {}


def register_method(config_type: type) -> Callable[[MaskFn], MaskFn]:
    """Decorator: make ``fn(targets, config, progress)`` the mask function for ``config_type``."""

    def wrap(fn: MaskFn) -> MaskFn:
        _REGISTRY[config_type] = fn
        _BY_NAME[config_type.name] = config_type
        return fn

    return wrap


def method_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def config_from_dict(data: dict[str, Any]) -> MethodConfig:
    """Build a method config from ``{"method": name, **fields}`` (inverse of ``to_dict``)."""
    data = dict(data)
    name = data.pop("method", None)
    if name not in _BY_NAME:
        raise SparsityConfigError(f"method must be one of {', '.join(method_names())}; got {name!r}")
    config_type = _BY_NAME[name]
    known = set(inspect.signature(config_type).parameters)  # NMConfig also takes pattern=
    unknown = sorted(set(data) - known)
    if unknown:
        raise SparsityConfigError(
            f"unknown option(s) {unknown} for method {name!r}; allowed: {sorted(known)}"
        )
    return config_type(**data)


def check_finite(targets: Sequence[Target]) -> None:
    """Refuse NaN/Inf weights: they have no magnitude rank and would poison thresholds."""
    for target in targets:
        flat = target.param.detach().reshape(-1)
        if not all(bool(torch.isfinite(flat[a:b]).all()) for a, b in chunks(flat.numel())):
            raise NonFiniteWeightError(
                f"weight {target.name!r} contains NaN or Inf values; fix the checkpoint "
                "or exclude the layer (exclude=...) before pruning"
            )


def compute_masks(
    targets: Sequence[Target],
    config: MethodConfig,
    show_progress: bool = False,
    current: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Keep-masks (bool, same shape as each weight) for ``targets`` under ``config``.

    Args:
        current: masks already in force. Weights they prune stay pruned (they rank below
            every kept weight), so gradual schedules and lottery-ticket rounds give nested
            masks with the exact new count.
    """
    if getattr(config, "needs_calibration", False):
        raise SparsityConfigError(
            f"method {config.name!r} needs calibration data: use es_plugins.calibrated_prune_(model, plan, "
            "calibration) or the CLI's --calib"
        )
    fn = _REGISTRY.get(type(config))
    if fn is None:
        raise SparsityConfigError(
            f"no pruning method registered for {type(config).__name__}; "
            f"available: {', '.join(method_names())}"
        )
    check_finite(targets)
    return fn(targets, config, progress_factory(show_progress, config.name), current or {})


# Import for registration side effects.
from . import magnitude, nm, random  # noqa: E402,F401
from .calibrated import CalibratedConfig, SparseGPTConfig, WandaConfig  # noqa: E402

for _config in (WandaConfig, SparseGPTConfig):
    _BY_NAME[_config.name] = _config

__all__ = [
    "CalibratedConfig",
    "SparseGPTConfig",
    "WandaConfig",
    "MethodConfig",
    "OMPConfig",
    "RandomConfig",
    "NMConfig",
    "compute_masks",
    "config_from_dict",
    "method_names",
    "parse_pattern",
    "register_method",
]
