"""Analysis tools: essential-sparsity sweeps, mask similarity, near-zero statistics, reports."""

from .similarity import MaskSimilarity, mask_similarity
from .sweep import SweepConfig, SweepResult, find_knee, run_sweep
from .sweep_report import write_sweep_report
from .zeros import NearZeroStats, near_zero_stats

__all__ = [
    "MaskSimilarity",
    "NearZeroStats",
    "SweepConfig",
    "SweepResult",
    "find_knee",
    "mask_similarity",
    "near_zero_stats",
    "run_sweep",
    "write_sweep_report",
]
