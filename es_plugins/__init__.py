"""es-plugins: essential sparsity for pre-trained transformers.

The core is framework-free: pick targets, compute exact masks, zero weights in place,
keep them zero through training, save and report. Framework adapters live in
``es_plugins.integrations`` and only translate events into these calls.
"""

from __future__ import annotations

import importlib as _importlib
import logging as _logging

from ._deprecation import install_moved_module_finder, warn_renamed
from ._version import __version__ as __version__
from .engines.lottery import LotteryConfig, LotteryTicket
from .engines.sparsify import sparsify_
from .engines.training import Sparsifier
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
from .masks.state import SparsityState
from .masks.targets import TargetSpec
from .methods import (
    MethodConfig,
    NMConfig,
    OMPConfig,
    RandomConfig,
    SparseGPTConfig,
    WandaConfig,
    register_method,
)
from .methods.plan import SparsityPlan
from .methods.schedules import CubicSchedule

# A library's manners: no handler that prints, records propagate to the user's logging set-up.
# The CLI alone attaches console output (es_plugins.cli.console.console_logging).
_logging.getLogger("es_plugins").addHandler(_logging.NullHandler())
install_moved_module_finder()  # pre-0.2 module paths (es_plugins.state, ...) import, with a warning

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
    "EnforcementHandle": "es_plugins.masks.state",
    "MASKS_FILENAME": "es_plugins.masks.state",
    "SparsityReport": "es_plugins.masks.report",
    "Target": "es_plugins.masks.targets",
    "build_report": "es_plugins.masks.report",
    "calibrated_prune_": "es_plugins.engines.sparsify",
    "compute_masks": "es_plugins.methods",
    "make_plan": "es_plugins.methods.plan",
    "resolve_targets": "es_plugins.masks.targets",
}


def __getattr__(name: str) -> object:
    """The former top-level plumbing names, for one release (PEP 562)."""
    if name not in _MOVED:
        raise AttributeError(f"module 'es_plugins' has no attribute {name!r}")
    warn_renamed(f"es_plugins.{name}", f"{_MOVED[name]}.{name}")
    return getattr(_importlib.import_module(_MOVED[name]), name)
