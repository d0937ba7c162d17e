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
from .lottery import LotteryConfig, LotteryTicket
from .methods import (
    MethodConfig,
    NMConfig,
    OMPConfig,
    RandomConfig,
    SparseGPTConfig,
    WandaConfig,
    compute_masks,
    register_method,
)
from .plan import SparsityPlan, make_plan
from .report import SparsityReport, build_report
from .schedules import CubicSchedule
from .sparsifier import Sparsifier
from .sparsify import calibrated_prune_ as calibrated_prune_  # deprecated: warns, goes away in 0.3
from .sparsify import sparsify_
from .state import MASKS_FILENAME, EnforcementHandle, SparsityState
from .targets import Target, TargetSpec, resolve_targets

# A library's manners: no handler that prints, records propagate to the user's logging set-up.
# The CLI alone attaches console output (es_plugins.cli.console_logging).
_logging.getLogger("es_plugins").addHandler(_logging.NullHandler())

__all__ = [
    "CheckpointError",
    "CubicSchedule",
    "DataError",
    "EnforcementHandle",
    "ExportError",
    "LotteryConfig",
    "LotteryTicket",
    "MASKS_FILENAME",
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
    "SparsityReport",
    "SparsityState",
    "Target",
    "TargetSpec",
    "WandaConfig",
    "build_report",
    "compute_masks",
    "make_plan",
    "register_method",
    "resolve_targets",
    "sparsify_",
]
