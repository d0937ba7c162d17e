"""Analysis tools: mask similarity and near-zero-weight statistics."""

from .similarity import MaskSimilarity, mask_similarity
from .zeros import NearZeroStats, near_zero_stats

__all__ = ["MaskSimilarity", "mask_similarity", "NearZeroStats", "near_zero_stats"]
