"""Result buffers whose pages the kernel maps in one call instead of one fault per page.

Why: a first call's masks are fresh memory, and every 4 KiB page of it faults on its first
write. On the VMs we measure on, that first touch costs about three read passes of fp32
weights (benchmarks/omp_passes.py, "first touch"), more than the selection's own comparisons.
``MAP_POPULATE`` maps and zeroes all pages in one system call, without a trap per page.
"""

from __future__ import annotations

import mmap

import torch

# Below this a buffer comes from the allocator: few pages, and a mapping per small mask would
# cost more system calls than the faults it saves.
PREFAULT_MIN_BYTES = 1 << 20
_POPULATE = getattr(mmap, "MAP_POPULATE", None)  # Linux only


def prefaulted_bools(numel: int) -> torch.Tensor:
    """An uninitialised flat bool tensor of ``numel`` elements, its pages already mapped (a
    private anonymous mapping, freed when the tensor is). Where ``MAP_POPULATE`` is missing,
    or for small buffers, ``torch.empty``."""
    if _POPULATE is None or numel < PREFAULT_MIN_BYTES:
        return torch.empty(numel, dtype=torch.bool)
    pages = mmap.mmap(-1, numel, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE)
    return torch.frombuffer(pages, dtype=torch.bool, count=numel)  # the tensor keeps ``pages`` alive
