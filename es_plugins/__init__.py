"""es-plugins: essential sparsity for pre-trained transformers.

The core is framework-free: pick targets, compute exact masks, zero weights in place,
keep them zero through training, save and report. Framework adapters live in
``es_plugins.integrations`` and only translate events into these calls.
"""

from __future__ import annotations

import logging as _logging

from ._version import __version__ as __version__
from .errors import (
    CheckpointError,
    DataError,
    ExportError,
    MaskMismatchError,
    NonFiniteWeightError,
    NoTargetsError,
    OutputPathError,
    SparsityConfigError,
)
from .export.verified import ExportOptions
from .jobs import Calibration, SweepOptions, compare_masks, export, prune_checkpoint, sweep
from .lottery import LotteryConfig, LotteryTicket
from .methods import (
    MethodConfig,
    NMConfig,
    OMPConfig,
    RandomConfig,
    SparseGPTConfig,
    WandaConfig,
    register_method,
)
from .plan import SparsityPlan
from .schedules import CubicSchedule
from .sparsifier import Sparsifier
from .sparsify import sparsify_
from .state import SparsityState
from .targets import TargetSpec

# A library's manners: no handler that prints, records propagate to the user's logging set-up.
# The CLI alone attaches console output (es_plugins._console.console_logging).
_logging.getLogger("es_plugins").addHandler(_logging.NullHandler())

# User verbs, configs, errors. Plumbing lives in its module; the former top-level names of
# plumbing keep working for one release, with a warning naming where they live now.
__all__ = [
    "Calibration",
    "CheckpointError",
    "CubicSchedule",
    "DataError",
    "ExportError",
    "ExportOptions",
    "LotteryConfig",
    "LotteryTicket",
    "MaskMismatchError",
    "MethodConfig",
    "NMConfig",
    "NoTargetsError",
    "NonFiniteWeightError",
    "OMPConfig",
    "OutputPathError",
    "RandomConfig",
    "SparseGPTConfig",
    "Sparsifier",
    "SparsityConfigError",
    "SparsityPlan",
    "SparsityState",
    "SweepOptions",
    "TargetSpec",
    "WandaConfig",
    "compare_masks",
    "export",
    "prune_checkpoint",
    "register_method",
    "sparsify_",
    "sweep",
]

_MOVED = {
    "EnforcementHandle": "es_plugins.state",
    "MASKS_FILENAME": "es_plugins.state",
    "SparsityReport": "es_plugins.report",
    "Target": "es_plugins.targets",
    "build_report": "es_plugins.report",
    "calibrated_prune_": "es_plugins.sparsify",
    "compute_masks": "es_plugins.methods",
    "make_plan": "es_plugins.plan",
    "resolve_targets": "es_plugins.targets",
}


def __getattr__(name: str) -> object:
    """The former top-level plumbing names, for one release (PEP 562)."""
    if name not in _MOVED:
        raise AttributeError(f"module 'es_plugins' has no attribute {name!r}")
    import importlib

    from ._deprecation import warn_renamed

    warn_renamed(f"es_plugins.{name}", f"{_MOVED[name]}.{name}")
    return getattr(importlib.import_module(_MOVED[name]), name)
