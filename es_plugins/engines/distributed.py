"""Distributed helpers (torch.distributed only): mask checksums and a cross-rank check."""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

from .._deprecation import warn_renamed
from ..errors import MaskMismatchError
from ..masks.state import SparsityState
from .sparsify import sparsify_


def masks_checksum(state: SparsityState) -> int:
    """A 60-bit digest of the masks (names, shapes, bits): equal masks, equal checksum."""
    digest = hashlib.sha256()
    for name in sorted(state.masks):
        mask = state.masks[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(mask.shape)).encode())
        digest.update(mask.numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 4


def assert_identical_across_ranks(state: SparsityState, group=None) -> int:
    """All-reduce min and max of the checksum; raise if any rank holds different masks."""
    checksum = masks_checksum(state)
    if not (dist.is_available() and dist.is_initialized()):
        return checksum
    values = torch.tensor([checksum, -checksum], dtype=torch.int64)
    dist.all_reduce(values, op=dist.ReduceOp.MIN, group=group)
    if int(values[0]) != checksum or int(-values[1]) != checksum:
        raise MaskMismatchError(f"rank {dist.get_rank()}: masks differ across ranks (checksum {checksum})")
    return checksum


def sparsify_sharded_(model, plan, group=None) -> SparsityState:
    """Deprecated spelling of ``sparsify_(model, plan, sharded=True, group=group)``: it warns,
    and goes away in 0.3."""
    warn_renamed("sparsify_sharded_(model, plan)", "sparsify_(model, plan, sharded=True)")
    return sparsify_(model, plan, sharded=True, group=group)
