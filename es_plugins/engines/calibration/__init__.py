"""Calibration-based one-shot pruning (Wanda, SparseGPT, SparseGPT refinement of a mask),
run block by block so only one block's activations and statistics are ever in memory.
:func:`es_plugins.sparsify_` is the entry point; this package is its calibrated engine."""

from .blocks import find_blocks
from .checks import check_calibration
from .in_memory import prune_calibrated_

__all__ = ["check_calibration", "find_blocks", "prune_calibrated_"]
