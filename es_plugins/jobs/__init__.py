"""The jobs: what each ``es-plugins`` command does, as library functions with the command's
options as arguments. The CLI (:mod:`es_plugins.cli`) only parses flags into these calls and
renders what they return."""

from .export import compress, decompress, export
from .inspect import inspect
from .prune import Calibration, PruneResult, prune_checkpoint
from .statistics import compare_masks, near_zero
from .sweep import SweepOptions, SweepRun, sweep

__all__ = [
    "Calibration",
    "PruneResult",
    "SweepOptions",
    "SweepRun",
    "compare_masks",
    "compress",
    "decompress",
    "export",
    "inspect",
    "near_zero",
    "prune_checkpoint",
    "sweep",
]
