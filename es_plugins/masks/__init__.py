"""Mask arithmetic: exact k-smallest selection, N:M patterns, bit packing."""

from .packing import pack_mask, unpack_mask
from .patterns import nm_compliance, nm_keep_mask
from .select import keep_largest_masks

__all__ = ["keep_largest_masks", "nm_keep_mask", "nm_compliance", "pack_mask", "unpack_mask"]
