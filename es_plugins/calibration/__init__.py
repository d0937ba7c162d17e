"""Calibration-based one-shot pruning (Wanda, SparseGPT, SparseGPT refinement of a mask),
run block by block so only one block's activations and statistics are ever in memory."""

from .blocks import find_blocks
from .oneshot import calibrated_prune_

__all__ = ["calibrated_prune_", "find_blocks"]
